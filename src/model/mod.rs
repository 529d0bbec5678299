//! Decoder-only causal language models on libtorch. One file per architecture
//! family describes its weights ([`llama`]: Llama, Mistral, SmolLM, Qwen2;
//! [`phi3`]: fused projections); the forward pass they share lives here and in
//! [`layers`]. Module names follow transformers, so LoRA `target_modules` written
//! for the Hugging Face stack name the same layers here.

pub mod config;
pub mod kv_cache;
pub mod layers;
pub mod llama;
pub mod load;
pub mod phi3;
pub mod weights;

pub use config::{Arch, ArchConfig};
pub use kv_cache::KvCache;
pub use load::{load_model, LoadedModel, ModelSource};

use layers::{attention, AttnMask, Linear, RmsNorm, Rope, TchResult};
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
    Hub(#[from] crate::hub::HubError),
    #[error("{0}")]
    Device(#[from] crate::device::DeviceError),
    #[error("libtorch: {}", crate::model::torch_message(.0))]
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

/// libtorch's messages carry a C++ backtrace; keep the first line, and say what
/// to do about running out of memory.
pub fn torch_message(e: &tch::TchError) -> String {
    first_line_with_advice(&e.to_string())
}

/// The first line of a libtorch message (an error, or a panic carrying one),
/// with what to lower when it is an out-of-memory.
pub fn first_line_with_advice(text: &str) -> String {
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if first.to_lowercase().contains("out of memory") {
        format!("{first} — out of memory: lower per_device_train_batch_size or max_length, enable gradient_checkpointing, or load the model in 4-bit")
    } else {
        first
    }
}

/// The q/k/v projections: separate (Llama, Qwen2) or fused (Phi-3).
// A few dozen of these exist per model; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum QkvProj {
    Separate { q: Linear, k: Linear, v: Linear },
    Fused { qkv: Linear },
}

/// The MLP's gate and up projections: separate or fused (Phi-3).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum GateUpProj {
    Separate { gate: Linear, up: Linear },
    Fused { gate_up: Linear },
}

#[derive(Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub qkv: QkvProj,
    pub o_proj: Linear,
    pub post_attention_layernorm: RmsNorm,
    pub gate_up: GateUpProj,
    pub down_proj: Linear,
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

impl DecoderLayer {
    fn forward(
        &self,
        x: &Tensor,
        cfg: &ArchConfig,
        rope: (&Rope, &Tensor, &Tensor),
        mask: &AttnMask,
        cache: Option<(&mut KvCache, usize)>,
        eager: bool,
    ) -> TchResult<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let (h, kvh, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let normed = self.input_layernorm.forward(x)?;
        let (q, k, v) = match &self.qkv {
            QkvProj::Separate { q, k, v } => (
                q.forward(&normed)?,
                k.forward(&normed)?,
                v.forward(&normed)?,
            ),
            QkvProj::Fused { qkv } => {
                let all = qkv.forward(&normed)?;
                (
                    all.f_narrow(-1, 0, h * d)?,
                    all.f_narrow(-1, h * d, kvh * d)?,
                    all.f_narrow(-1, (h + kvh) * d, kvh * d)?,
                )
            }
        };
        let q = q.f_view([b, t, h, d])?.f_transpose(1, 2)?;
        let k = k.f_view([b, t, kvh, d])?.f_transpose(1, 2)?;
        let v = v.f_view([b, t, kvh, d])?.f_transpose(1, 2)?;
        let (rope, cos, sin) = rope;
        let q = rope.apply(&q, cos, sin)?;
        let k = rope.apply(&k, cos, sin)?;
        let (k, v) = match cache {
            Some((cache, i)) => cache.append(i, &k, &v)?,
            None => (k, v),
        };
        let (attn, _) = attention(&q, &k, &v, mask, eager)?;
        let attn = attn.f_transpose(1, 2)?.f_reshape([b, t, h * d])?;
        let x = x.f_add(&self.o_proj.forward(&attn)?)?;
        let normed = self.post_attention_layernorm.forward(&x)?;
        let (gate, up) = match &self.gate_up {
            GateUpProj::Separate { gate, up } => (gate.forward(&normed)?, up.forward(&normed)?),
            GateUpProj::Fused { gate_up } => {
                let both = gate_up.forward(&normed)?;
                let n = both.size()[2] / 2;
                (both.f_narrow(-1, 0, n)?, both.f_narrow(-1, n, n)?)
            }
        };
        let mlp = self.down_proj.forward(&gate.f_silu()?.f_mul(&up)?)?;
        x.f_add(&mlp)
    }
}

impl CausalLm {
    /// Final hidden states `[B, T, hidden]`.
    ///
    /// - `attention_mask` `[B, past + T]` (1 real, 0 padding), left or right padding;
    /// - `position_ids` `[B, T]`: default `past..past+T` for every row, as a
    ///   plain transformers forward; rows whose positions restart at 0 are packed
    ///   sequences that attend only within themselves;
    /// - `cache`: keys and values of earlier tokens, extended in place.
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
    ) -> TchResult<Tensor> {
        let (b, t) = (input_ids.size()[0], input_ids.size()[1]);
        let past = cache.as_ref().map_or(0, |c| c.len());
        let default_pos;
        let pos = match position_ids {
            Some(p) => p,
            None => {
                default_pos = Tensor::f_arange_start(past, past + t, (Kind::Int64, self.device))?
                    .f_unsqueeze(0)?
                    .f_expand([b, t], false)?;
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
        let embed = self
            .saved_module("model.embed_tokens")
            .unwrap_or(&self.embed_tokens);
        let mut x = Tensor::f_embedding(embed, input_ids, -1, false, false)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(
                &x,
                &self.config,
                (&self.rope, &cos, &sin),
                &mask,
                c,
                self.eager_attention,
            )?;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        self.norm.forward(&x)
    }

    /// Logits `[B, T, vocab]` from hidden states.
    pub fn logits(&self, hidden: &Tensor) -> TchResult<Tensor> {
        if let Some(w) = self.saved_module("lm_head") {
            return hidden.f_linear(w, None::<Tensor>);
        }
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => hidden.f_linear(&self.embed_tokens, None::<Tensor>),
        }
    }

    /// Logits `[B, T, vocab]`; see [`CausalLm::hidden_states`] for the inputs.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> TchResult<Tensor> {
        let h = self.hidden_states(input_ids, attention_mask, position_ids, cache)?;
        self.logits(&h)
    }

    /// The active adapter's copy of `module`, if it saves one.
    fn saved_module(&self, module: &str) -> Option<&Tensor> {
        let active = self.active_adapter.as_deref()?;
        self.saved_modules
            .iter()
            .find(|m| m.adapter == active && m.module == module)
            .map(|m| &m.weight)
    }

    /// Every linear layer with its transformers module name
    /// (`model.layers.0.self_attn.q_proj`, ..., `lm_head` when untied).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut v: Vec<(String, &mut Linear)> = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let attn = format!("model.layers.{i}.self_attn");
            let mlp = format!("model.layers.{i}.mlp");
            match &mut layer.qkv {
                QkvProj::Separate { q, k, v: vv } => {
                    v.push((format!("{attn}.q_proj"), q));
                    v.push((format!("{attn}.k_proj"), k));
                    v.push((format!("{attn}.v_proj"), vv));
                }
                QkvProj::Fused { qkv } => v.push((format!("{attn}.qkv_proj"), qkv)),
            }
            v.push((format!("{attn}.o_proj"), &mut layer.o_proj));
            match &mut layer.gate_up {
                GateUpProj::Separate { gate, up } => {
                    v.push((format!("{mlp}.gate_proj"), gate));
                    v.push((format!("{mlp}.up_proj"), up));
                }
                GateUpProj::Fused { gate_up } => v.push((format!("{mlp}.gate_up_proj"), gate_up)),
            }
            v.push((format!("{mlp}.down_proj"), &mut layer.down_proj));
        }
        if let Some(h) = &mut self.lm_head {
            v.push(("lm_head".into(), h));
        }
        v
    }

    /// An empty cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Every tensor that is not a linear layer's weight (embeddings, norms,
    /// biases), once.
    fn other_tensors(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.embed_tokens, &self.norm.weight];
        for layer in &self.layers {
            v.push(&layer.input_layernorm.weight);
            v.push(&layer.post_attention_layernorm.weight);
        }
        for l in self.linears() {
            v.extend(l.bias.iter());
        }
        v
    }

    /// Every linear layer (tied `lm_head` excluded: it is `embed_tokens`), in
    /// the order of [`CausalLm::linears_mut`].
    pub(crate) fn linears(&self) -> Vec<&Linear> {
        let mut v: Vec<&Linear> = Vec::new();
        for layer in &self.layers {
            match &layer.qkv {
                QkvProj::Separate { q, k, v: vv } => v.extend([q, k, vv]),
                QkvProj::Fused { qkv } => v.push(qkv),
            }
            v.push(&layer.o_proj);
            match &layer.gate_up {
                GateUpProj::Separate { gate, up } => v.extend([gate, up]),
                GateUpProj::Fused { gate_up } => v.push(gate_up),
            }
            v.push(&layer.down_proj);
        }
        v.extend(self.lm_head.iter());
        v
    }

    /// How the decoder's linear layers are stored (`dense`, `nf4+dq`, `int8`, ...).
    pub fn weight_format(&self) -> String {
        self.linears()
            .first()
            .map_or_else(|| "dense".into(), |l| l.weight.format())
    }

    /// Parameter count of the base model (tied weights counted once), like
    /// `model.num_parameters()` before any adapter is added; a quantized weight
    /// counts its original elements, as peft does.
    pub fn num_parameters(&self) -> i64 {
        let linear: i64 = self.linears().iter().map(|l| l.weight.numel()).sum();
        linear
            + self
                .other_tensors()
                .iter()
                .map(|t| t.numel() as i64)
                .sum::<i64>()
    }

    /// Bytes of parameters and buffers, like transformers' `get_memory_footprint()`
    /// (a 4-bit weight counts its packed bytes, an 8-bit one a byte per element).
    pub fn memory_footprint(&self) -> i64 {
        let linear: i64 = self
            .linears()
            .iter()
            .map(|l| l.weight.hf_footprint_bytes())
            .sum();
        let other: i64 = self
            .other_tensors()
            .iter()
            .map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64)
            .sum();
        linear + other + self.rope.buffer_bytes()
    }
}
