//! The run commands: `ftui train` (foreground with a progress bar, `--json`,
//! `--dry-run`, `--detach`), `ftui runs`, and `ftui stop|pause|resume|save`,
//! which talk to a run through its folder.

use super::{load_config, print_json, Failure};
use crate::run::{self, Command, Run};
use crate::train::{self, setup, EvalLog, Observer, TrainError, TrainLog};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Stop after N optimizer steps (overrides [training] max_steps).
    #[arg(long)]
    pub max_steps: Option<i64>,
    /// The run folder (overrides [training] output_dir).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Continue from a checkpoint folder, or `latest` (the newest in the run folder).
    #[arg(long, value_name = "DIR|latest")]
    pub resume_from_checkpoint: Option<String>,
    /// Run in the background, in a session of its own; print the run folder and return.
    #[arg(long)]
    pub detach: bool,
    /// The metrics lines on stdout as they are written (--dry-run: the plan as JSON).
    #[arg(long)]
    pub json: bool,
    /// Run every pre-run check and print the plan; train nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Writes a line to stderr, never failing (the terminal may be gone).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn checks_failed(problems: &[setup::Problem]) -> Failure {
    let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    Failure {
        code: 2,
        message: format!(
            "the run cannot start; change the config:\n{}",
            lines.join("\n")
        ),
    }
}

fn train_failure(e: TrainError) -> Failure {
    match e {
        TrainError::Checks(problems) => checks_failed(&problems),
        other => other.to_string().into(),
    }
}

fn run_failure(e: run::RunError) -> Failure {
    match e {
        run::RunError::Busy { .. } => Failure {
            code: 2,
            message: e.to_string(),
        },
        other => other.to_string().into(),
    }
}

pub fn train(a: TrainArgs, config: Option<&Path>) -> Result<(), Failure> {
    let path = config.ok_or_else(|| Failure {
        code: 2,
        message: "ftui train needs --config FILE".into(),
    })?;
    let mut c = load_config(path)?;
    if let Some(n) = a.max_steps {
        c.training.max_steps = n;
    }
    if let Some(d) = &a.output_dir {
        c.training.output_dir = d.to_string_lossy().into_owned();
    }
    if let Some(r) = &a.resume_from_checkpoint {
        c.training.resume_from_checkpoint = Some(r.clone());
    }
    let out = PathBuf::from(&c.training.output_dir);
    let resume = c.training.resume_from_checkpoint.clone();
    let mut problems = setup::config_problems(&c);
    problems.extend(run::folder_problems(&out, resume.as_deref()));
    if !problems.is_empty() {
        return Err(checks_failed(&problems));
    }
    if a.dry_run {
        let (plan, _) = setup::run(
            &c,
            &out,
            resume.map(PathBuf::from),
            true,
            &mut Silent,
            &train::Control::default(),
        )
        .map_err(train_failure)?;
        if a.json {
            print_json(&serde_json::to_value(&plan)?);
        } else {
            print_plan(&plan, &out);
        }
        return Ok(());
    }
    if a.detach {
        return detach(&out, a.json);
    }
    foreground(&c, path, &out, resume, a.json)
}

/// Starts this same command without `--detach` in the background.
fn detach(out: &Path, json: bool) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find ftui's program: {e}"))?;
    let args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    // The run claims the folder under its own pid, so say here what it replaces.
    if let Ok(run::Liveness::Stale(info)) = run::liveness(out) {
        say(&format!("ftui: {}", run::stale_note(out, &info)));
    }
    let pid = run::detach::spawn(&exe, &args, out).map_err(run_failure)?;
    let log = out.join(run::LOG_FILE);
    if json {
        print_json(&serde_json::json!({
            "run_dir": out.display().to_string(),
            "pid": pid,
            "log": log.display().to_string(),
        }));
    } else {
        println!("{}", out.display());
        say(&format!(
            "ftui: training in the background (pid {pid}, output in {}); watch with `ftui runs` or `tail -f {}`, stop with `ftui stop {}`",
            log.display(),
            out.join(run::METRICS_FILE).display(),
            out.display()
        ));
    }
    Ok(())
}

fn foreground(
    c: &crate::config::RunConfig,
    config_path: &Path,
    out: &Path,
    resume: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    // Its notes (a stale run taken over) reach the face as warnings.
    let mut run = Run::start(out, c, resume.is_some()).map_err(run_failure)?;
    let handle = run.handle();
    stop_on_signals(handle.clone())?;
    let terminal = std::io::stderr().is_terminal();
    let mut face = Progress::new(terminal, json);
    let mut stdout = std::io::stdout();
    let echo = json.then_some(&mut stdout as &mut dyn Write);
    let mut recorder = run.recorder(&mut face, echo);
    let result = setup::run(
        c,
        out,
        resume.map(PathBuf::from),
        false,
        &mut recorder,
        handle.control(),
    );
    recorder.finish(&result);
    drop(run);
    face.close();
    let (plan, summary) = result.map_err(train_failure)?;
    let Some(s) = summary else {
        return Ok(());
    };
    if json {
        return Ok(());
    }
    let line = match s.status {
        train::EndStatus::Finished => format!(
            "finished {} steps in {:.1}s, train_loss {:.4}: adapter, tokenizer and model card in {}",
            s.global_step,
            s.train_runtime,
            s.train_loss,
            out.display()
        ),
        train::EndStatus::Stopped => format!(
            "stopped at step {} of {}; checkpoint: {}; continue with: ftui train --config {} --output-dir {} --resume-from-checkpoint latest",
            s.global_step,
            plan.steps,
            s.checkpoint
                .as_ref()
                .map_or_else(|| "none".into(), |p| p.display().to_string()),
            config_path.display(),
            out.display()
        ),
    };
    let _ = writeln!(std::io::stdout(), "{line}");
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP stop the run after its step, with a
/// checkpoint; a second one quits at once.
fn stop_on_signals(handle: run::RunHandle) -> Result<(), Failure> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot watch for Ctrl-C: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = false;
            for _ in signals.forever() {
                if seen {
                    handle.abandon("interrupted twice: quit before the checkpoint was written");
                    std::process::exit(130);
                }
                seen = true;
                say("\nftui: stopping after this step, then writing a checkpoint (press Ctrl-C again to quit at once)");
                handle.apply(Command::Stop);
            }
        })
        .map_err(|e| format!("cannot watch for Ctrl-C: {e}"))?;
    Ok(())
}

/// An observer that says nothing (the dry run's).
struct Silent;
impl Observer for Silent {}

/// The foreground run's face: a progress bar on a terminal, plain lines in a
/// log (a detached run's train.log); with `--json` only the bar, and only on
/// a terminal, since the metrics go to stdout.
struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
    lines: bool,
    first_step: bool,
    learning_rate: f64,
    tokens_per_second: f64,
}

impl Progress {
    fn new(terminal: bool, json: bool) -> Self {
        Progress {
            bar: None,
            terminal,
            lines: !terminal && !json,
            first_step: true,
            learning_rate: 0.0,
            tokens_per_second: 0.0,
        }
    }

    fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| say(line)),
            None if self.lines || self.terminal => say(line),
            None => {}
        }
    }

    fn close(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn plan(&mut self, plan: &setup::Plan) {
        if self.terminal {
            let bar = ProgressBar::with_draw_target(
                Some(plan.steps as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        } else if self.lines {
            say(&format!(
                "training {} steps on {} rows ({} tokens per epoch)",
                plan.steps, plan.rows, plan.tokens_per_epoch
            ));
        }
    }

    fn step(&mut self, step: usize, _total: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            if self.first_step {
                // A resumed run starts part way: time the steps from here.
                bar.reset_eta();
                self.first_step = false;
            }
            bar.set_message(format!(
                "loss {loss:.4} lr {:.2e} {:.0} tok/s",
                self.learning_rate, self.tokens_per_second
            ));
        }
    }

    fn log(&mut self, log: &TrainLog) {
        self.learning_rate = log.learning_rate;
        self.tokens_per_second = log.tokens_per_second;
        if self.lines {
            say(&format!(
                "step {} epoch {:.2} loss {:.4} lr {:.3e} grad_norm {:.4} accuracy {:.4} {:.0} tok/s",
                log.step,
                log.epoch,
                log.loss,
                log.learning_rate,
                log.grad_norm,
                log.mean_token_accuracy,
                log.tokens_per_second
            ));
        }
    }

    fn eval(&mut self, log: &EvalLog) {
        self.note(&format!(
            "step {} eval_loss {:.4} eval_mean_token_accuracy {:.4}",
            log.step, log.eval_loss, log.eval_mean_token_accuracy
        ));
    }

    fn checkpoint(&mut self, step: usize, path: &Path) {
        self.note(&format!("step {step}: checkpoint {}", path.display()));
    }

    fn warning(&mut self, message: &str) {
        self.note(&format!("warning: {message}"));
    }
}

fn print_plan(plan: &setup::Plan, out: &Path) {
    println!("plan for {}:", out.display());
    println!(
        "  examples        {} ({} for evaluation), {} rows after preparation",
        plan.examples, plan.eval_examples, plan.rows
    );
    println!("  steps           {}", plan.steps);
    println!(
        "  tokens / epoch  {} ({} trained)",
        plan.tokens_per_epoch, plan.trained_tokens_per_epoch
    );
    println!(
        "  parameters      {} trainable of {}",
        plan.trainable_parameters, plan.total_parameters
    );
    println!(
        "  memory estimate {:.1} MiB",
        plan.memory_estimate_bytes as f64 / (1024.0 * 1024.0)
    );
    for w in &plan.warnings {
        println!("  warning: {w}");
    }
}

/// `ftui runs`: the run folders under ./runs and the config's output_dir.
pub fn runs(json: bool, config: Option<&Path>) -> Result<(), Failure> {
    let mut dirs = run::list::folders_under(Path::new("runs"));
    if let Some(path) = config {
        dirs.push(PathBuf::from(load_config(path)?.training.output_dir));
    }
    let rows = run::list_runs(&dirs);
    if json {
        print_json(&serde_json::to_value(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        say("no runs under ./runs (give --config FILE to look in its output_dir too)");
        return Ok(());
    }
    println!(
        "{:<32} {:<6} {:<9} {:>13} {:>9} {:>8}",
        "FOLDER", "ENGINE", "STATUS", "STEP", "LOSS", "PID"
    );
    for r in rows {
        let step = match r.max_steps {
            Some(m) => format!("{}/{m}", r.step),
            None => r.step.to_string(),
        };
        let loss = r
            .last_loss
            .map_or_else(|| "-".into(), |l| format!("{l:.4}"));
        println!(
            "{:<32} {:<6} {:<9} {:>13} {:>9} {:>8}",
            r.folder, r.engine, r.status, step, loss, r.pid
        );
    }
    Ok(())
}

/// `ftui stop|pause|resume|save RUN_DIR`.
pub fn control(dir: &Path, command: Command) -> Result<(), Failure> {
    let reply = run::send(dir, command).map_err(run_failure)?;
    println!("{}", reply["message"].as_str().unwrap_or("done").trim_end());
    Ok(())
}
