//! The Export pane's place in the tab order. Exporting from the workbench
//! (merged folder, GGUF, Modelfile) comes here; until then it says how to
//! export from the command line.

use super::keys::Action;
use super::pane::{Ctx, Effect, Pane, Status};
use crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

#[derive(Default)]
pub struct ExportPane;

impl Pane for ExportPane {
    fn name(&self) -> &'static str {
        "export"
    }

    fn title(&self) -> &'static str {
        "Export"
    }

    fn actions(&self) -> &'static [Action] {
        &[Action::Export]
    }

    fn hints(&self) -> &'static [Action] {
        &[]
    }

    fn on_key(&mut self, _key: &KeyEvent, action: Option<Action>, _ctx: &Ctx) -> Vec<Effect> {
        match action {
            Some(Action::Export) => vec![Effect::Status(Status::error(
                "export from the workbench is not there yet",
            ))],
            _ => Vec::new(),
        }
    }

    fn draw(&self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let t = &ctx.theme;
        let text = format!(
            "Exporting the trained adapter (a merged folder, a GGUF file, an Ollama \
             Modelfile) from here is coming. The run's adapter is in {}.",
            ctx.config.training.output_dir
        );
        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .style(t.text)
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .border_style(t.border)
                        .title(" Export "),
                ),
            area,
        );
    }
}
