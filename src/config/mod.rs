//! The run configuration: one TOML file whose sections and key names mirror the
//! Hugging Face objects (`BitsAndBytesConfig`, `LoraConfig`, `SFTConfig`, ...), so
//! what a practitioner knows from that stack carries over one to one.
//!
//! Loading is strict: an unknown key, a wrong type or an invalid value is an error
//! that names the file, the line and the key. Defaults equal the Hugging Face
//! defaults where one exists.

mod docs;
mod validate;

pub use docs::{field_doc, FieldDoc, FIELDS};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A configuration problem, located in its file. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{path}: cannot write the config file: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The 1-based line holding byte `offset` of `text` (for errors in TOML files:
/// the run config, themes, key maps).
pub fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<QuantizationConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataConfig>,
    #[serde(default)]
    pub template: TemplateConfig,
    #[serde(default)]
    pub training: TrainingConfig,
    #[serde(default)]
    pub generation: GenerationConfig,
    #[serde(default)]
    pub ui: UiConfig,
}

/// The workbench's look: not part of a training run, kept beside it for convenience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// A built-in theme (dark, light, high-contrast), a theme in the config
    /// folder's themes/, or a path to a theme file.
    #[serde(default = "default_theme")]
    pub theme: String,
}

fn default_theme() -> String {
    "dark".into()
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            theme: default_theme(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Float32,
    Bfloat16,
    Float16,
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttnImplementation {
    #[default]
    Sdpa,
    Eager,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A local folder, a `.gguf` file, a hub repo id, or `default` (the embedded model).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub attn_implementation: AttnImplementation,
    /// A LoRA adapter in peft's format loaded on the base: chat uses it and
    /// training continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

fn default_device() -> String {
    "auto".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuantType {
    #[default]
    Fp4,
    Nf4,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationConfig {
    #[serde(default)]
    pub load_in_4bit: bool,
    #[serde(default)]
    pub load_in_8bit: bool,
    #[serde(default)]
    pub bnb_4bit_quant_type: QuantType,
    #[serde(default)]
    pub bnb_4bit_use_double_quant: bool,
    #[serde(default = "default_compute_dtype")]
    pub bnb_4bit_compute_dtype: DType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_int8_skip_modules: Option<Vec<String>>,
    #[serde(default = "default_int8_threshold")]
    pub llm_int8_threshold: f64,
}

fn default_compute_dtype() -> DType {
    DType::Float32
}
fn default_int8_threshold() -> f64 {
    6.0
}

/// `target_modules`: a list of module names, or one string (`"all-linear"` or a
/// regular expression matched against the full module name, as peft does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    Names(Vec<String>),
    Pattern(String),
}

/// `init_lora_weights`: `true` (peft's default: A kaiming-uniform, B zero),
/// `false` (random B too, for tests), or `"gaussian"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitLoraWeights {
    Flag(bool),
    Method(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoraBias {
    #[default]
    None,
    All,
    LoraOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    #[serde(default = "default_r")]
    pub r: i64,
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub bias: LoraBias,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_modules: Option<TargetModules>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules_to_save: Vec<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default = "default_init_lora")]
    pub init_lora_weights: InitLoraWeights,
}

fn default_r() -> i64 {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_init_lora() -> InitLoraWeights {
    InitLoraWeights::Flag(true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    Messages,
    PromptCompletion,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRecord {
    #[default]
    Fail,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub source: String,
    #[serde(default = "default_split")]
    pub split: String,
    /// Detected from the columns when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatting_template: Option<String>,
    #[serde(default)]
    pub eval_split_ratio: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub on_bad_record: OnBadRecord,
}

fn default_split() -> String {
    "train".into()
}
fn default_seed() -> u64 {
    42
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    #[default]
    Right,
    Left,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token: Option<String>,
    #[serde(default)]
    pub padding_side: PaddingSide,
    #[serde(default)]
    pub add_generation_prompt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PackingStrategy {
    #[default]
    Bfd,
    Wrapped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrScheduler {
    #[default]
    Linear,
    Cosine,
    Constant,
    ConstantWithWarmup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    #[default]
    AdamwTorch,
    AdamwTorchFused,
    #[serde(rename = "adamw_8bit")]
    Adamw8bit,
    #[serde(rename = "paged_adamw_8bit")]
    PagedAdamw8bit,
    #[serde(rename = "paged_adamw_32bit")]
    PagedAdamw32bit,
    Sgd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    #[serde(default = "default_output_dir")]
    pub output_dir: String,
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    #[serde(default)]
    pub packing: bool,
    #[serde(default)]
    pub packing_strategy: PackingStrategy,
    #[serde(default)]
    pub padding_free: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_to_multiple_of: Option<usize>,
    /// `None`: on for prompt/completion data, as trl decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_only_loss: Option<bool>,
    #[serde(default)]
    pub assistant_only_loss: bool,
    #[serde(default = "default_batch")]
    pub per_device_train_batch_size: usize,
    #[serde(default = "default_one")]
    pub gradient_accumulation_steps: usize,
    #[serde(default)]
    pub auto_find_batch_size: bool,
    #[serde(default = "default_true")]
    pub gradient_checkpointing: bool,
    #[serde(default = "default_epochs")]
    pub num_train_epochs: f64,
    #[serde(default = "default_max_steps")]
    pub max_steps: i64,
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    #[serde(default)]
    pub lr_scheduler_type: LrScheduler,
    #[serde(default)]
    pub warmup_ratio: f64,
    #[serde(default)]
    pub warmup_steps: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f64,
    #[serde(default)]
    pub optim: Optimizer,
    /// `None`: bf16 where the device supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bf16: Option<bool>,
    #[serde(default)]
    pub fp16: bool,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_logging_steps")]
    pub logging_steps: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_steps: Option<usize>,
    #[serde(default = "default_save_steps")]
    pub save_steps: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_total_limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from_checkpoint: Option<String>,
}

fn default_output_dir() -> String {
    "runs/ftui".into()
}
fn default_max_length() -> usize {
    1024
}
fn default_batch() -> usize {
    8
}
fn default_one() -> usize {
    1
}
fn default_true() -> bool {
    true
}
fn default_epochs() -> f64 {
    3.0
}
fn default_max_steps() -> i64 {
    -1
}
fn default_lr() -> f64 {
    2e-5
}
fn default_max_grad_norm() -> f64 {
    1.0
}
fn default_logging_steps() -> usize {
    10
}
fn default_save_steps() -> usize {
    500
}

impl Default for TrainingConfig {
    fn default() -> Self {
        // An empty table through serde gives exactly the declared field defaults.
        toml::from_str("").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// 0 means greedy decoding.
    #[serde(default)]
    pub temperature: f64,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    #[serde(default = "default_repetition_penalty")]
    pub repetition_penalty: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_max_new_tokens() -> usize {
    256
}
fn default_top_p() -> f64 {
    1.0
}
fn default_top_k() -> usize {
    50
}
fn default_repetition_penalty() -> f64 {
    1.0
}

impl Default for GenerationConfig {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

impl RunConfig {
    /// Reads and validates a config file. Relative paths inside it stay as written;
    /// [`RunConfig::resolve`] makes them relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: RunConfig = toml::from_str(text).map_err(|e| {
            let (line, key) = validate::locate_serde_error(text, e.span(), e.message());
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message: validate::tidy_message(e.message()),
            }
        })?;
        validate::check(&config).map_err(|(section, key, message)| {
            let line = validate::line_of_key(text, section, key);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key: format!("[{section}] {key}"),
                message,
            }
        })?;
        Ok(config)
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the config atomically: a temporary file beside it, then a rename.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        crate::fsutil::write_atomic(path, self.to_toml().as_bytes()).map_err(|source| {
            ConfigError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Makes local paths (model source, data source, output dir, template file)
    /// relative to `base` (the config file's folder) when they exist there.
    pub fn resolve(&mut self, base: &Path) {
        let fix = |s: &mut String| {
            let p = Path::new(s.as_str());
            if p.is_relative() && !p.exists() && base.join(p).exists() {
                *s = base.join(p).to_string_lossy().into_owned();
            }
        };
        fix(&mut self.model.source);
        if let Some(d) = &mut self.data {
            fix(&mut d.source);
        }
        if let Some(t) = &mut self.template.chat_template {
            fix(t);
        }
    }
}

#[cfg(test)]
mod tests;
