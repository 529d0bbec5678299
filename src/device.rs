//! Choosing the device and the floating-point kind the model runs in.

use crate::config::DType;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device `{0}`: not one of auto, cpu, cuda, cuda:N")]
    Unknown(String),
    #[error("device `{0}`: CUDA is not available here (libtorch sees {1} CUDA devices); use device = \"cpu\"")]
    NoCuda(String, i64),
}

/// Parses `auto|cpu|cuda|cuda:N`; `auto` is the first CUDA device when present.
pub fn parse_device(spec: &str) -> Result<Device, DeviceError> {
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let index = match spec {
                "cuda" => 0,
                _ => spec
                    .strip_prefix("cuda:")
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| DeviceError::Unknown(spec.into()))?,
            };
            let count = tch::Cuda::device_count();
            if !tch::Cuda::is_available() || index as i64 >= count {
                return Err(DeviceError::NoCuda(spec.into(), count));
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// Whether bfloat16 matmuls run on `device` (tried, not assumed).
pub fn bf16_supported(device: Device) -> bool {
    let a = match Tensor::f_ones([4, 4], (Kind::BFloat16, device)) {
        Ok(a) => a,
        Err(_) => return false,
    };
    a.f_matmul(&a)
        .and_then(|c| c.f_sum(Kind::Float))
        .map(|s| s.double_value(&[]) == 64.0)
        .unwrap_or(false)
}

/// The kind for model weights: `auto` is bf16 on a CUDA device that supports
/// it, else float32 (CPU half-precision matmuls are slow and inexact).
pub fn resolve_kind(dtype: DType, device: Device) -> Kind {
    match dtype {
        DType::Float32 => Kind::Float,
        DType::Bfloat16 => Kind::BFloat16,
        DType::Float16 => Kind::Half,
        DType::Auto => {
            if device.is_cuda() && bf16_supported(device) {
                Kind::BFloat16
            } else {
                Kind::Float
            }
        }
    }
}

/// A short name for a kind, as the config spells it.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        Kind::Double => "float64",
        _ => "other",
    }
}

/// A short name for a device: `cpu` or `cuda:N`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// The process's peak resident memory (`VmHWM`), in bytes; `None` off Linux.
pub fn peak_rss_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident memory to the current one (Linux's
/// `/proc/self/clear_refs`), so a later [`peak_rss_bytes`] measures what
/// happened since. Returns whether the kernel took it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod memory_tests {
    #[test]
    fn peak_memory_is_read() {
        assert!(super::peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
