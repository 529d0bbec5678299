//! BitsAndBytes quantization on libtorch: the `[quantization]` section
//! (`BitsAndBytesConfig`) applied to the linear layers of the decoder blocks.
//!
//! QLoRA fits a base model on one GPU by storing its frozen linear weights in 4
//! bits (NF4 or FP4, one absmax per 64 weights, optionally the absmax values in
//! 8 bits too) or LLM.int8 (one scale per output row), and expanding them to the
//! compute dtype only for the matmul. ftui does this itself, on the model's
//! device with plain tensor ops, and produces the very codes and scales
//! bitsandbytes produces, so memory figures, losses and logits can be checked
//! against the Hugging Face stack number for number (`tests/quant.rs` compares
//! with `tests/fixtures/quant/bnb.safetensors`, made by
//! `tools/make_quant_fixtures.py`).
//!
//! - [`LinearWeight`]: what a linear layer holds — dense, 4-bit or int8.
//! - [`QuantPlan`]: which modules a config quantizes and how (transformers'
//!   rules: decoder-block linears, never `lm_head`, minus `llm_int8_skip_modules`).
//! - [`prepare_for_kbit_training`]: peft's `prepare_model_for_kbit_training`
//!   for the tensors that stay dense.
//! - [`codebook`]: the NF4/FP4 tables, the 8-bit dynamic map and the
//!   nearest-code rule.

pub mod codebook;
pub mod four_bit;
pub mod int8;

pub use codebook::{FourBitType, BLOCKSIZE_4BIT, NESTED_BLOCKSIZE};
pub use four_bit::{effective_compute_kind, Absmax4bit, NestedAbsmax, Packed4bit};
pub use int8::Int8Weight;

use crate::config::{DType, QuantizationConfig};
use tch::{Device, Kind, Tensor};

use crate::torch::TchResult;

#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("cannot quantize a {kind:?} weight: bitsandbytes quantizes float32, bfloat16 and float16 weights")]
    Kind { kind: Kind },
    #[error("LLM.int8 quantizes 2-D weights, got shape {shape:?}")]
    Shape { shape: Vec<i64> },
    #[error("libtorch: {}", crate::torch::torch_message(.0))]
    Torch(#[from] tch::TchError),
}

fn check_float(weight: &Tensor) -> Result<(), QuantError> {
    match weight.kind() {
        Kind::Float | Kind::BFloat16 | Kind::Half => Ok(()),
        kind => Err(QuantError::Kind { kind }),
    }
}

/// The libtorch kind of a `bnb_4bit_compute_dtype` (`auto` is float32, the
/// transformers default).
pub fn compute_kind(dtype: DType) -> Kind {
    match dtype {
        DType::Float32 | DType::Auto => Kind::Float,
        DType::Bfloat16 => Kind::BFloat16,
        DType::Float16 => Kind::Half,
    }
}

/// How a config quantizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuantMethod {
    /// `load_in_4bit`.
    FourBit {
        quant_type: FourBitType,
        double_quant: bool,
    },
    /// `load_in_8bit`.
    Int8,
}

/// A `[quantization]` section turned into decisions: which modules, which
/// format, which compute dtype.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantPlan {
    pub method: QuantMethod,
    /// `llm_int8_skip_modules`.
    pub skip_modules: Vec<String>,
    /// `bnb_4bit_compute_dtype`.
    pub compute_kind: Kind,
    /// `llm_int8_threshold`, for [`LinearWeight::linear_inference`].
    pub llm_int8_threshold: f64,
}

impl QuantPlan {
    /// `None` when neither `load_in_4bit` nor `load_in_8bit` is set.
    pub fn from_config(cfg: &QuantizationConfig) -> Option<QuantPlan> {
        let method = if cfg.load_in_4bit {
            QuantMethod::FourBit {
                quant_type: cfg.bnb_4bit_quant_type.into(),
                double_quant: cfg.bnb_4bit_use_double_quant,
            }
        } else if cfg.load_in_8bit {
            QuantMethod::Int8
        } else {
            return None;
        };
        Some(QuantPlan {
            method,
            skip_modules: cfg.llm_int8_skip_modules.clone().unwrap_or_default(),
            compute_kind: compute_kind(cfg.bnb_4bit_compute_dtype),
            llm_int8_threshold: cfg.llm_int8_threshold,
        })
    }

    /// Whether the linear module `name` (e.g. `model.layers.3.self_attn.q_proj`)
    /// is quantized: a linear layer inside a decoder block (`...layers.N...`),
    /// never `lm_head`, and not matched by `llm_int8_skip_modules`.
    pub fn should_quantize(&self, name: &str) -> bool {
        in_decoder_block(name)
            && !name.split('.').any(|s| s == "lm_head")
            && !self.skip_modules.iter().any(|p| skip_matches(p, name))
    }

    /// Quantizes `weight` with this plan's format.
    pub fn quantize(&self, weight: &Tensor) -> Result<LinearWeight, QuantError> {
        Ok(match self.method {
            QuantMethod::FourBit {
                quant_type,
                double_quant,
            } => LinearWeight::FourBit(Packed4bit::quantize(
                weight,
                quant_type,
                double_quant,
                self.compute_kind,
            )?),
            QuantMethod::Int8 => LinearWeight::Int8(
                Int8Weight::quantize(weight)?.with_threshold(self.llm_int8_threshold),
            ),
        })
    }

    /// The weight of linear module `name` as the model should hold it:
    /// quantized when [`QuantPlan::should_quantize`], dense otherwise.
    pub fn load_linear(&self, name: &str, weight: Tensor) -> Result<LinearWeight, QuantError> {
        if self.should_quantize(name) {
            self.quantize(&weight)
        } else {
            Ok(LinearWeight::Dense(weight))
        }
    }
}

/// `name` has a `layers.N` segment pair: a module inside a decoder block.
fn in_decoder_block(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts
        .windows(2)
        .any(|w| w[0] == "layers" && !w[1].is_empty() && w[1].bytes().all(|b| b.is_ascii_digit()))
}

/// transformers' `should_convert_module` test for one skip pattern, taken
/// literally: the pattern matches from the start up to a module boundary
/// (`model.layers.1` skips `model.layers.1.mlp.up_proj`, not `model.layers.11...`),
/// or is a suffix of the name (`o_proj`; note `up_proj` also skips Phi-3's
/// `gate_up_proj`, as it does in transformers).
pub fn skip_matches(pattern: &str, name: &str) -> bool {
    if name.ends_with(pattern) {
        return true;
    }
    match name.strip_prefix(pattern) {
        Some(rest) => pattern.ends_with('.') || rest.is_empty() || rest.starts_with('.'),
        None => false,
    }
}

/// The weight a linear layer holds.
#[derive(Debug)]
pub enum LinearWeight {
    /// Unquantized, in the model's dtype.
    Dense(Tensor),
    /// NF4 / FP4 (`load_in_4bit`).
    FourBit(Packed4bit),
    /// LLM.int8 (`load_in_8bit`).
    Int8(Int8Weight),
}

impl LinearWeight {
    /// `weight` as the config stores it (dense when the config quantizes
    /// nothing). Which modules to quantize is [`QuantPlan::should_quantize`].
    pub fn quantize(weight: &Tensor, cfg: &QuantizationConfig) -> Result<LinearWeight, QuantError> {
        match QuantPlan::from_config(cfg) {
            Some(plan) => plan.quantize(weight),
            None => Ok(LinearWeight::Dense(weight.shallow_clone())),
        }
    }

    /// `y = x W^T + b`, the way bitsandbytes' layer computes it in training
    /// (gradients flow to `x`; the weight never requires grad).
    pub fn linear(&self, x: &Tensor, bias: Option<&Tensor>) -> TchResult<Tensor> {
        match self {
            LinearWeight::Dense(w) => x.f_linear(w, bias),
            LinearWeight::FourBit(p) => p.linear(x, bias),
            LinearWeight::Int8(q) => q.linear(x, bias),
        }
    }

    /// Like [`LinearWeight::linear`], but int8 weights run LLM.int8 inference
    /// (int8 matmul, outlier columns above `llm_int8_threshold` in float16), as
    /// bitsandbytes' `Linear8bitLt` does in eval mode. No gradients.
    pub fn linear_inference(&self, x: &Tensor, bias: Option<&Tensor>) -> TchResult<Tensor> {
        match self {
            LinearWeight::Int8(q) => q.linear_llm_int8(x, bias, q.threshold()),
            other => other.linear(x, bias),
        }
    }

    /// The weight as a dense tensor of `kind` (for merging LoRA, export, tests).
    pub fn dequantize(&self, kind: Kind) -> TchResult<Tensor> {
        match self {
            LinearWeight::Dense(w) => w.f_to_kind(kind),
            LinearWeight::FourBit(p) => p.dequantize(kind),
            LinearWeight::Int8(q) => q.dequantize(kind),
        }
    }

    /// `[out_features, in_features]`.
    pub fn shape(&self) -> Vec<i64> {
        match self {
            LinearWeight::Dense(w) => w.size(),
            LinearWeight::FourBit(p) => p.shape().to_vec(),
            LinearWeight::Int8(q) => q.shape(),
        }
    }

    /// Elements of the original weight (peft counts a `Params4bit` this way:
    /// twice its packed bytes).
    pub fn numel(&self) -> i64 {
        match self {
            LinearWeight::Dense(w) => w.numel() as i64,
            LinearWeight::FourBit(p) => p.numel(),
            LinearWeight::Int8(q) => q.numel(),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            LinearWeight::Dense(w) => w.device(),
            LinearWeight::FourBit(p) => p.device(),
            LinearWeight::Int8(q) => q.device(),
        }
    }

    pub fn is_quantized(&self) -> bool {
        !matches!(self, LinearWeight::Dense(_))
    }

    /// `nf4`, `nf4+dq`, `fp4`, `fp4+dq`, `int8`, or the dense kind.
    pub fn format(&self) -> String {
        match self {
            LinearWeight::Dense(w) => format!("{:?}", w.kind()).to_lowercase(),
            LinearWeight::FourBit(p) => match p.absmax() {
                Absmax4bit::Plain(_) => p.quant_type().name().to_string(),
                Absmax4bit::Nested(_) => format!("{}+dq", p.quant_type().name()),
            },
            LinearWeight::Int8(_) => "int8".into(),
        }
    }

    /// The dense weight, if it is one.
    pub fn as_dense(&self) -> Option<&Tensor> {
        match self {
            LinearWeight::Dense(w) => Some(w),
            _ => None,
        }
    }

    pub fn as_dense_mut(&mut self) -> Option<&mut Tensor> {
        match self {
            LinearWeight::Dense(w) => Some(w),
            _ => None,
        }
    }

    /// Bytes the weight occupies: codes plus absmax / nested state / row scales.
    pub fn memory_bytes(&self) -> i64 {
        match self {
            LinearWeight::Dense(w) => dense_bytes(w),
            LinearWeight::FourBit(p) => p.memory_bytes(),
            LinearWeight::Int8(q) => q.memory_bytes(),
        }
    }

    /// The weight's share of transformers' `get_memory_footprint()`: the bytes of
    /// the parameter only (packed codes for 4-bit, `CB` for int8; quant states
    /// and `SCB` are attributes, not parameters or buffers).
    pub fn hf_footprint_bytes(&self) -> i64 {
        match self {
            LinearWeight::Dense(w) => dense_bytes(w),
            LinearWeight::FourBit(p) => p.hf_footprint_bytes(),
            LinearWeight::Int8(q) => q.hf_footprint_bytes(),
        }
    }

    /// [`prepare_for_kbit_training`] for this weight: a dense float16/bfloat16
    /// weight goes to float32; quantized weights are left as they are. Returns
    /// whether it was upcast.
    pub fn prepare_for_kbit_training(&mut self) -> TchResult<bool> {
        match self {
            LinearWeight::Dense(w) => prepare_tensor_for_kbit_training(w),
            _ => Ok(false),
        }
    }
}

/// Bytes of a dense tensor: `numel * element_size`.
pub fn dense_bytes(t: &Tensor) -> i64 {
    t.numel() as i64 * t.kind().elt_size_in_bytes() as i64
}

/// What [`prepare_for_kbit_training`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KbitPrep {
    /// Float16/bfloat16 tensors now float32.
    pub upcast: usize,
    /// Tensors that required grad and no longer do.
    pub frozen: usize,
    /// Bytes added by the upcasts.
    pub added_bytes: i64,
}

/// peft's `prepare_model_for_kbit_training` for the tensors that stay dense
/// (embeddings, norms, biases, `lm_head`, skipped linears): every one is frozen
/// and every float16/bfloat16 one becomes float32 in place (the handle keeps
/// its identity, so the model sees the new data). Quantized weights are left
/// alone ([`LinearWeight::prepare_for_kbit_training`] does nothing for them).
///
/// peft also turns on gradient checkpointing and, for reentrant
/// checkpointing, makes the input embeddings' output require grad (see
/// [`enable_input_require_grads`]).
pub fn prepare_for_kbit_training<'a>(
    tensors: impl IntoIterator<Item = &'a mut Tensor>,
) -> TchResult<KbitPrep> {
    let mut prep = KbitPrep::default();
    for t in tensors {
        if t.requires_grad() {
            prep.frozen += 1;
        }
        let before = dense_bytes(t);
        if prepare_tensor_for_kbit_training(t)? {
            prep.upcast += 1;
            prep.added_bytes += dense_bytes(t) - before;
        }
    }
    Ok(prep)
}

/// Freezes `t` and upcasts it to float32 if it is float16 or bfloat16. Returns
/// whether it was upcast.
pub fn prepare_tensor_for_kbit_training(t: &mut Tensor) -> TchResult<bool> {
    if t.requires_grad() {
        let _ = t.f_requires_grad_(false)?;
    }
    if !matches!(t.kind(), Kind::Half | Kind::BFloat16) {
        return Ok(false);
    }
    let _guard = tch::no_grad_guard();
    let wide = t.f_to_kind(Kind::Float)?;
    t.f_set_data(&wide)?;
    Ok(true)
}

/// transformers' `enable_input_require_grads`: the embedding output requires
/// grad, so that reentrant gradient checkpointing of the first block (whose
/// inputs would otherwise all be frozen) still backpropagates into LoRA
/// weights. Apply to the output of the embedding lookup.
pub fn enable_input_require_grads(embeds: &Tensor) -> TchResult<Tensor> {
    let mut out = embeds.shallow_clone();
    if !out.requires_grad() {
        out = out.f_requires_grad_(true)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuantType;

    fn cfg4() -> QuantizationConfig {
        QuantizationConfig {
            load_in_4bit: true,
            load_in_8bit: false,
            bnb_4bit_quant_type: QuantType::Nf4,
            bnb_4bit_use_double_quant: true,
            bnb_4bit_compute_dtype: DType::Bfloat16,
            llm_int8_skip_modules: None,
            llm_int8_threshold: 6.0,
        }
    }

    #[test]
    fn plan_follows_the_config() {
        let p = QuantPlan::from_config(&cfg4()).unwrap();
        assert_eq!(
            p.method,
            QuantMethod::FourBit {
                quant_type: FourBitType::Nf4,
                double_quant: true
            }
        );
        assert_eq!(p.compute_kind, Kind::BFloat16);
        let mut c = cfg4();
        c.load_in_4bit = false;
        assert!(QuantPlan::from_config(&c).is_none());
        c.load_in_8bit = true;
        assert_eq!(
            QuantPlan::from_config(&c).unwrap().method,
            QuantMethod::Int8
        );
    }

    #[test]
    fn only_decoder_block_linears_are_quantized() {
        let p = QuantPlan::from_config(&cfg4()).unwrap();
        assert!(p.should_quantize("model.layers.0.self_attn.q_proj"));
        assert!(p.should_quantize("model.layers.31.mlp.gate_up_proj"));
        assert!(!p.should_quantize("lm_head"));
        assert!(!p.should_quantize("model.embed_tokens"));
        assert!(!p.should_quantize("model.layers.x.mlp.up_proj"));
    }

    #[test]
    fn skip_patterns_match_like_transformers() {
        assert!(skip_matches("o_proj", "model.layers.0.self_attn.o_proj"));
        assert!(skip_matches("up_proj", "model.layers.0.mlp.gate_up_proj"));
        assert!(skip_matches("model.layers.1", "model.layers.1.mlp.up_proj"));
        assert!(!skip_matches(
            "model.layers.1",
            "model.layers.11.mlp.up_proj"
        ));
        assert!(skip_matches(
            "model.layers.1.",
            "model.layers.1.mlp.up_proj"
        ));
        assert!(!skip_matches("mlp.gate", "model.layers.0.mlp.gate_proj"));
        let mut c = cfg4();
        c.llm_int8_skip_modules = Some(vec!["o_proj".into(), "model.layers.1".into()]);
        let p = QuantPlan::from_config(&c).unwrap();
        assert!(!p.should_quantize("model.layers.0.self_attn.o_proj"));
        assert!(!p.should_quantize("model.layers.1.self_attn.q_proj"));
        assert!(p.should_quantize("model.layers.10.self_attn.q_proj"));
    }

    #[test]
    fn load_linear_quantizes_or_keeps_dense() {
        let p = QuantPlan::from_config(&cfg4()).unwrap();
        let w = Tensor::randn([8, 64], (Kind::Float, Device::Cpu));
        let q = p
            .load_linear("model.layers.0.mlp.down_proj", w.shallow_clone())
            .unwrap();
        assert_eq!(q.format(), "nf4+dq");
        assert_eq!(q.shape(), vec![8, 64]);
        assert_eq!(q.numel(), 512);
        assert_eq!(q.hf_footprint_bytes(), 256);
        assert_eq!(q.memory_bytes(), 256 + 8 + 4 + 4);
        let d = p.load_linear("lm_head", w.shallow_clone()).unwrap();
        assert_eq!(d.format(), "float");
        assert_eq!(d.memory_bytes(), 512 * 4);
        let mut c = cfg4();
        c.load_in_4bit = false;
        c.load_in_8bit = true;
        let i = LinearWeight::quantize(&w, &c).unwrap();
        assert_eq!(i.format(), "int8");
        assert_eq!(i.hf_footprint_bytes(), 512);
        assert_eq!(i.memory_bytes(), 512 + 32);
        let x = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
        for lw in [&q, &d, &i] {
            assert_eq!(lw.linear(&x, None).unwrap().size(), vec![2, 8]);
            assert_eq!(lw.linear_inference(&x, None).unwrap().size(), vec![2, 8]);
        }
    }

    #[test]
    fn kbit_preparation_upcasts_half_kinds_and_freezes() {
        let mut a = Tensor::ones([4, 4], (Kind::BFloat16, Device::Cpu)).set_requires_grad(true);
        let mut b = Tensor::ones([4], (Kind::Half, Device::Cpu));
        let mut c = Tensor::ones([4], (Kind::Float, Device::Cpu));
        let alias = a.shallow_clone();
        let prep = prepare_for_kbit_training([&mut a, &mut b, &mut c]).unwrap();
        assert_eq!(
            prep,
            KbitPrep {
                upcast: 2,
                frozen: 1,
                added_bytes: 16 * 2 + 4 * 2
            }
        );
        assert_eq!(
            (a.kind(), b.kind(), c.kind()),
            (Kind::Float, Kind::Float, Kind::Float)
        );
        assert!(!a.requires_grad());
        assert_eq!(
            alias.kind(),
            Kind::Float,
            "the model's handle sees the upcast"
        );
        let mut q = QuantPlan::from_config(&cfg4())
            .unwrap()
            .quantize(&Tensor::ones([2, 64], (Kind::BFloat16, Device::Cpu)))
            .unwrap();
        assert!(!q.prepare_for_kbit_training().unwrap());
        let e =
            enable_input_require_grads(&Tensor::ones([1, 2], (Kind::Float, Device::Cpu))).unwrap();
        assert!(e.requires_grad());
    }
}
