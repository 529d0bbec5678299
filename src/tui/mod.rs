//! The workbench: ratatui on crossterm. One loop selects over terminal input,
//! engine events and a tick; the frame is drawn from the app state only, and the
//! terminal is restored on every exit, panic included.

mod app;
mod batches;
mod chat;
mod config_pane;
mod data_pane;
pub mod keys;
pub mod theme;

pub use app::{App, Pane};
pub use chat::Turn;

use crate::config::RunConfig;
use crate::engine::Engine;
use crossbeam_channel::{select, tick, unbounded};
use crossterm::event::{self, Event as TermEvent};
use std::path::PathBuf;
use std::time::Duration;

/// Runs the workbench until the user quits.
pub fn run(config: RunConfig, config_path: PathBuf) -> std::io::Result<()> {
    let engine = Engine::start();
    let mut app = App::new(config, config_path);
    app.start(&engine);

    // ratatui::init installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::init();
    // Engine panics become error events; only the UI thread's restore the terminal.
    crate::engine::quiet_engine_panics();
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
    let ticker = tick(Duration::from_millis(100));
    let result = (|| -> std::io::Result<()> {
        loop {
            terminal.draw(|f| app.draw(f))?;
            select! {
                recv(input_rx) -> e => match e {
                    Ok(TermEvent::Key(k)) => app.on_key(k, &engine),
                    Ok(TermEvent::Mouse(m)) => app.on_mouse(m),
                    Ok(_) => {}
                    Err(_) => break,
                },
                recv(engine.events) -> e => if let Ok(e) = e { app.on_engine(e) },
                recv(ticker) -> _ => app.on_tick(&engine),
            }
            // Drain what else arrived so a burst of tokens costs one frame.
            while let Ok(e) = engine.events.try_recv() {
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
    result
}
