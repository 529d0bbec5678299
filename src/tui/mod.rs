//! The workbench: ratatui on crossterm. One loop selects over terminal input,
//! engine events and a tick (when panes look at training runs' folders); the
//! frame is drawn from the app state only, and the
//! terminal is restored on every exit, panic included. The workbench speaks to
//! the engine only through [`crate::engine::protocol`].

mod app;
mod attached;
mod batches;
mod chat;
mod config_pane;
mod data_pane;
mod export_pane;
mod history;
pub mod keys;
pub mod launch;
mod pane;
pub mod runs;
mod text_input;
pub mod theme;
mod training;
mod wrap;

pub use app::App;
pub use pane::{Ctx, Effect, Pane, Status, StatusKind};

use crate::config::RunConfig;
use crate::engine::protocol::{Event, Jobs};
use crossbeam_channel::{select, tick, unbounded, Receiver};
use crossterm::event::{self, Event as TermEvent};
use std::path::PathBuf;
use std::time::Duration;

/// How often panes look at files (a run's metrics): often enough to follow
/// a run, rarely enough to cost nothing.
const TICK: Duration = Duration::from_millis(250);

/// While the workbench owns the terminal, a panic on any other thread (the
/// engine's, the input reader's) is logged, not printed over the screen: the
/// engine reports its own as failed jobs. The UI thread's panics go to the
/// hook before, which restores the terminal first.
fn log_panics_off_this_thread() {
    let ui = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let here = std::thread::current();
        if here.id() == ui {
            previous(info);
        } else {
            log::error!("panic on {}: {info}", here.name().unwrap_or("a thread"));
        }
    }));
}

/// Runs the workbench until the user quits, sending requests to `jobs` and
/// reading their `events`.
pub fn run(
    config: RunConfig,
    config_path: PathBuf,
    jobs: &dyn Jobs,
    events: &Receiver<Event>,
) -> std::io::Result<()> {
    let mut app = App::new(config, config_path);
    app.start(jobs);

    // ratatui::init installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::init();
    log_panics_off_this_thread();
    crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture)?;
    let (input_tx, input_rx) = unbounded();
    std::thread::Builder::new()
        .name("ftui-input".into())
        .spawn(move || {
            while let Ok(e) = event::read() {
                if input_tx.send(e).is_err() {
                    break;
                }
            }
        })?;
    let ticks = tick(TICK);
    app.on_tick();
    let result = (|| -> std::io::Result<()> {
        loop {
            terminal.draw(|f| app.draw(f))?;
            select! {
                recv(input_rx) -> e => match e {
                    Ok(TermEvent::Key(k)) => app.on_key(k, jobs),
                    Ok(TermEvent::Mouse(m)) => app.on_mouse(m),
                    Ok(_) => {}
                    Err(_) => break,
                },
                recv(events) -> e => if let Ok(e) = e { app.on_engine(e) },
                recv(ticks) -> _ => app.on_tick(),
            }
            // Drain what else arrived so a burst of tokens costs one frame.
            while let Ok(e) = events.try_recv() {
                app.on_engine(e);
            }
            if app.quit {
                break;
            }
        }
        Ok(())
    })();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    ratatui::restore();
    for note in app.farewell() {
        println!("{note}");
    }
    result
}
