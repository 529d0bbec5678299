//! Decoder-only causal language models on libtorch. One file per architecture
//! family says where its weights go ([`llama`]: Llama, Mistral, SmolLM, Qwen2;
//! [`phi3`]: fused projections); the blocks they share are [`block`], built from
//! [`crate::nn`]. Module names follow transformers, so LoRA `target_modules`
//! written for the Hugging Face stack name the same layers here.
//!
//! The forward pass is public stage by stage ([`CausalLm::context`],
//! [`CausalLm::embed`], [`CausalLm::layer`], [`CausalLm::final_norm`],
//! [`CausalLm::logits`]) so a trainer can run blocks without keeping their
//! activations and recompute them in backward. Where a model comes from (hub,
//! default model) and adapter files are other modules' business.

pub mod block;
pub mod config;
pub mod llama;
pub mod load;
pub mod loss;
pub mod phi3;
#[cfg(test)]
pub(crate) mod tiny;
pub mod weights;

pub use block::{BlockContext, DecoderLayer, GateUpProj, QkvProj};
pub use config::{Arch, ArchConfig};
pub use load::{build, LoadOptions};

use crate::nn::{AttnMask, KvCache, Linear, RmsNorm, Rope};
use crate::torch::TchResult;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{file}: tensor `{name}` is missing")]
    MissingTensor { file: String, name: String },
    #[error("{file}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        file: String,
        name: String,
        got: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("{0}")]
    Config(#[from] config::ConfigJsonError),
    #[error("{0}")]
    Device(#[from] crate::device::DeviceError),
    #[error("libtorch: {}", crate::torch::torch_message(.0))]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Other(String),
}

impl ModelError {
    pub fn file(path: &Path, message: String) -> Self {
        ModelError::File {
            file: path.display().to_string(),
            message,
        }
    }
}

/// A decoder-only transformer with its language-modelling head.
#[derive(Debug)]
pub struct CausalLm {
    pub config: ArchConfig,
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None`: tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    pub rope: Rope,
    pub device: Device,
    pub kind: Kind,
    pub eager_attention: bool,
    /// Full trainable copies of whole modules (peft's `modules_to_save`, e.g.
    /// `lm_head`, `model.embed_tokens`), per adapter.
    pub saved_modules: Vec<SavedModule>,
    /// The adapter in use, if any.
    pub active_adapter: Option<String>,
}

/// A module an adapter replaces as a whole while it is active.
#[derive(Debug)]
pub struct SavedModule {
    pub adapter: String,
    /// `lm_head` or `model.embed_tokens`.
    pub module: String,
    pub weight: Tensor,
}

/// A module of the model as the visitor meets it, by reference (`L` a linear
/// layer, `T` a tensor).
#[derive(Debug)]
pub enum Module<L, T> {
    /// A linear layer (its weight, bias and adapters).
    Linear(L),
    /// An RMSNorm's weight.
    Norm(T),
    /// The token embeddings.
    Embedding(T),
}
pub type ModuleRef<'a> = Module<&'a Linear, &'a Tensor>;
pub type ModuleMut<'a> = Module<&'a mut Linear, &'a mut Tensor>;

/// The one walk over a model's modules, in transformers' order and names
/// (`model.embed_tokens`, `model.layers.0.input_layernorm`,
/// `model.layers.0.self_attn.q_proj`, ..., `model.norm`, `lm_head` when
/// untied), instantiated for shared and for mutable references.
macro_rules! walk_modules {
    ($model:expr, $f:expr, $iter:ident, $($mut_:tt)?) => {{
        let model = $model;
        let f = $f;
        f("model.embed_tokens", Module::Embedding(& $($mut_)? model.embed_tokens));
        for (i, layer) in model.layers.$iter().enumerate() {
            let p = format!("model.layers.{i}");
            f(&format!("{p}.input_layernorm"), Module::Norm(& $($mut_)? layer.input_layernorm.weight));
            match & $($mut_)? layer.qkv {
                QkvProj::Separate { q, k, v } => {
                    f(&format!("{p}.self_attn.q_proj"), Module::Linear(q));
                    f(&format!("{p}.self_attn.k_proj"), Module::Linear(k));
                    f(&format!("{p}.self_attn.v_proj"), Module::Linear(v));
                }
                QkvProj::Fused { qkv } => f(&format!("{p}.self_attn.qkv_proj"), Module::Linear(qkv)),
            }
            f(&format!("{p}.self_attn.o_proj"), Module::Linear(& $($mut_)? layer.o_proj));
            f(&format!("{p}.post_attention_layernorm"), Module::Norm(& $($mut_)? layer.post_attention_layernorm.weight));
            match & $($mut_)? layer.gate_up {
                GateUpProj::Separate { gate, up } => {
                    f(&format!("{p}.mlp.gate_proj"), Module::Linear(gate));
                    f(&format!("{p}.mlp.up_proj"), Module::Linear(up));
                }
                GateUpProj::Fused { gate_up } => f(&format!("{p}.mlp.gate_up_proj"), Module::Linear(gate_up)),
            }
            f(&format!("{p}.mlp.down_proj"), Module::Linear(& $($mut_)? layer.down_proj));
        }
        f("model.norm", Module::Norm(& $($mut_)? model.norm.weight));
        if let Some(head) = & $($mut_)? model.lm_head {
            f("lm_head", Module::Linear(head));
        }
    }};
}

impl CausalLm {
    /// Calls `f` with every module and its transformers name.
    pub fn visit<'a>(&'a self, f: &mut dyn FnMut(&str, ModuleRef<'a>)) {
        walk_modules!(self, f, iter,)
    }

    /// Calls `f` with every module and its transformers name, mutably.
    pub fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&str, ModuleMut<'a>)) {
        walk_modules!(self, f, iter_mut, mut)
    }

    /// Every linear layer with its module name (tied `lm_head` excluded: it is
    /// `embed_tokens`).
    pub fn linears(&self) -> Vec<(String, &Linear)> {
        let mut v = Vec::new();
        self.visit(&mut |name, m| {
            if let Module::Linear(l) = m {
                v.push((name.to_string(), l));
            }
        });
        v
    }

    /// [`CausalLm::linears`], mutably.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut v = Vec::new();
        self.visit_mut(&mut |name, m| {
            if let Module::Linear(l) = m {
                v.push((name.to_string(), l));
            }
        });
        v
    }

    /// What the blocks of a forward pass over `t` new tokens after `past`
    /// cached ones share (see [`CausalLm::forward_t`] for the inputs).
    pub fn context(
        &self,
        batch: i64,
        t: i64,
        past: i64,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
    ) -> TchResult<BlockContext<'_>> {
        let default_pos;
        let pos = match position_ids {
            Some(p) => p,
            None => {
                default_pos = Tensor::f_arange_start(past, past + t, (Kind::Int64, self.device))?
                    .f_unsqueeze(0)?
                    .f_expand([batch, t], false)?;
                &default_pos
            }
        };
        let mask = AttnMask::build(
            attention_mask,
            position_ids,
            t,
            past,
            self.config.sliding_window,
            self.device,
        )?;
        let (cos, sin) = self.rope.cos_sin(pos, self.kind)?;
        Ok(BlockContext {
            config: &self.config,
            rope: &self.rope,
            cos,
            sin,
            mask,
            eager: self.eager_attention,
        })
    }

    /// Token embeddings `[B, T, hidden]` (the active adapter's copy when it
    /// saves one).
    pub fn embed(&self, input_ids: &Tensor) -> TchResult<Tensor> {
        let table = self
            .saved_module("model.embed_tokens")
            .unwrap_or(&self.embed_tokens);
        Tensor::f_embedding(table, input_ids, -1, false, false)
    }

    /// Decoder block `i`.
    pub fn layer(&self, i: usize) -> &DecoderLayer {
        &self.layers[i]
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The final norm over the last block's output.
    pub fn final_norm(&self, x: &Tensor) -> TchResult<Tensor> {
        self.norm.forward(x)
    }

    /// Final hidden states `[B, T, hidden]`.
    ///
    /// - `attention_mask` `[B, past + T]` (1 real, 0 padding), left or right padding;
    /// - `position_ids` `[B, T]`: default `past..past+T` for every row, as a
    ///   plain transformers forward; rows whose positions restart at 0 are packed
    ///   sequences that attend only within themselves;
    /// - `cache`: keys and values of earlier tokens, extended in place;
    /// - `train`: adapter dropout on, 8-bit weights on their training path.
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> TchResult<Tensor> {
        let (b, t) = (input_ids.size()[0], input_ids.size()[1]);
        let past = cache.as_ref().map_or(0, |c| c.len());
        let ctx = self.context(b, t, past, attention_mask, position_ids)?;
        let mut x = self.embed(input_ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward_t(&x, &ctx, c, train)?;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        self.final_norm(&x)
    }

    /// Logits `[B, T, vocab]` from hidden states.
    pub fn logits(&self, hidden: &Tensor) -> TchResult<Tensor> {
        if let Some(w) = self.saved_module("lm_head") {
            return hidden.f_linear(w, None::<Tensor>);
        }
        match &self.lm_head {
            Some(head) => head.forward_t(hidden, false),
            None => hidden.f_linear(&self.embed_tokens, None::<Tensor>),
        }
    }

    /// The output head's weight `[vocab, hidden]` (the active adapter's saved
    /// copy, the untied `lm_head`, or the tied embeddings), for a loss that runs
    /// the head itself chunk by chunk. `None` when the head has an active adapter
    /// of its own or is quantized.
    pub fn head_weight(&self) -> Option<&Tensor> {
        if let Some(w) = self.saved_module("lm_head") {
            return Some(w);
        }
        match &self.lm_head {
            Some(head) if head.active_adapter().is_none() => head.weight.as_dense(),
            Some(_) => None,
            None => Some(&self.embed_tokens),
        }
    }

    /// Logits `[B, T, vocab]`; see [`CausalLm::hidden_states`] for the inputs.
    pub fn forward_t(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> TchResult<Tensor> {
        let h = self.hidden_states(input_ids, attention_mask, position_ids, cache, train)?;
        self.logits(&h)
    }

    /// Inference logits: [`CausalLm::forward_t`] with `train` off.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> TchResult<Tensor> {
        self.forward_t(input_ids, attention_mask, position_ids, cache, false)
    }

    /// The active adapter's copy of `module`, if it saves one.
    fn saved_module(&self, module: &str) -> Option<&Tensor> {
        let active = self.active_adapter.as_deref()?;
        self.saved_modules
            .iter()
            .find(|m| m.adapter == active && m.module == module)
            .map(|m| &m.weight)
    }

    /// An empty cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// How the decoder's linear layers are stored (`dense`, `nf4+dq`, `int8`, ...).
    pub fn weight_format(&self) -> String {
        self.linears()
            .first()
            .map_or_else(|| "dense".into(), |(_, l)| l.weight.format())
    }

    /// Parameter count of the base model (tied weights counted once), like
    /// `model.num_parameters()` before any adapter is added; a quantized weight
    /// counts its original elements, as peft does.
    pub fn num_parameters(&self) -> i64 {
        let mut n = 0;
        self.visit(&mut |_, m| {
            n += match m {
                Module::Linear(l) => {
                    l.weight.numel() + l.bias.as_ref().map_or(0, |b| b.numel() as i64)
                }
                Module::Norm(t) | Module::Embedding(t) => t.numel() as i64,
            }
        });
        n
    }

    /// Bytes of parameters and buffers, like transformers' `get_memory_footprint()`
    /// (a 4-bit weight counts its packed bytes, an 8-bit one a byte per element).
    pub fn memory_footprint(&self) -> i64 {
        let mut n = 0;
        self.visit(&mut |_, m| {
            n += match m {
                Module::Linear(l) => {
                    l.weight.hf_footprint_bytes()
                        + l.bias.as_ref().map_or(0, crate::quant::dense_bytes)
                }
                Module::Norm(t) | Module::Embedding(t) => crate::quant::dense_bytes(t),
            }
        });
        n + self.rope.buffer_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visitor_names_every_module_once_in_order() {
        let m = tiny::llama(2);
        let mut names = Vec::new();
        m.visit(&mut |n, _| names.push(n.to_string()));
        assert_eq!(
            names.first().map(String::as_str),
            Some("model.embed_tokens")
        );
        assert_eq!(
            names[1..4],
            [
                "model.layers.0.input_layernorm",
                "model.layers.0.self_attn.q_proj",
                "model.layers.0.self_attn.k_proj"
            ]
        );
        assert_eq!(names.last().map(String::as_str), Some("lm_head"));
        assert_eq!(names.len(), 1 + 2 * 9 + 2);
        // The parameter count is the visitor's sum: 2 embeddings-sized tables,
        // 5 norms, 2 x (16*16*2 + 8*16*2 + 24*16*3).
        assert_eq!(
            m.num_parameters(),
            2 * 32 * 16 + 5 * 16 + 2 * (512 + 256 + 1152)
        );
    }

    #[test]
    fn stage_calls_equal_the_whole_forward() {
        let m = tiny::llama(2);
        let ids = Tensor::from_slice(&[3i64, 1, 4, 1, 5, 9, 2, 6]).view([2, 4]);
        let whole = m.forward(&ids, None, None, None).expect("forward");
        let ctx = m.context(2, 4, 0, None, None).expect("context");
        let mut x = m.embed(&ids).expect("embed");
        for i in 0..m.num_layers() {
            x = m.layer(i).forward_t(&x, &ctx, None, false).expect("block");
        }
        let staged = m.logits(&m.final_norm(&x).expect("norm")).expect("head");
        let diff = (whole - staged).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }
}
