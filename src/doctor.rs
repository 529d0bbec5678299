//! `ftui doctor`: what this installation can do, for bug reports and set-up.

use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Report {
    pub ftui_version: String,
    pub libtorch_version: String,
    pub libtorch_lib: String,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub device: String,
    pub bf16_supported: bool,
    pub threads: i32,
    pub config_dir: String,
    pub cache_dir: String,
    pub data_dir: String,
    pub hf_home: String,
    pub hf_token_present: bool,
    pub hub_endpoint: String,
    pub hub_offline: bool,
    pub hub_reachable: bool,
    pub default_model: Option<String>,
}

/// The libtorch version, read from the torch package that holds the linked
/// library folder (`torch/version.py` beside `torch/lib`).
pub fn libtorch_version() -> Option<String> {
    let lib = std::path::Path::new(option_env!("FTUI_LIBTORCH_LIB")?);
    let text = std::fs::read_to_string(lib.parent()?.join("version.py")).ok()?;
    let line = text.lines().find(|l| l.starts_with("__version__"))?;
    let v = line.split(['\'', '"']).nth(1)?;
    Some(v.split('+').next().unwrap_or(v).to_string())
}

/// Asks the hub's API for a small public model's metadata, with a short timeout.
fn hub_reachable(endpoint: &str) -> bool {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(3))
        .build();
    let url = format!("{endpoint}/api/models/HuggingFaceTB/SmolLM2-135M-Instruct");
    match agent.head(&url).call() {
        Ok(_) => true,
        // An HTTP error status still means the hub answered.
        Err(ureq::Error::Status(..)) => true,
        Err(_) => false,
    }
}

pub fn report() -> Report {
    let dirs = crate::paths::dirs();
    let hub = crate::hub::HubSettings::from_env();
    let device = tch::Device::cuda_if_available();
    Report {
        ftui_version: env!("CARGO_PKG_VERSION").to_string(),
        libtorch_version: libtorch_version().unwrap_or_else(|| "unknown".into()),
        libtorch_lib: option_env!("FTUI_LIBTORCH_LIB").unwrap_or("").to_string(),
        cuda_available: tch::Cuda::is_available(),
        cuda_device_count: tch::Cuda::device_count(),
        device: crate::device::device_name(device),
        bf16_supported: crate::device::bf16_supported(device),
        threads: tch::get_num_threads(),
        config_dir: dirs.config.display().to_string(),
        cache_dir: dirs.cache.display().to_string(),
        data_dir: dirs.data.display().to_string(),
        hf_home: hub.cache_dir.display().to_string(),
        hf_token_present: hub.token.is_some(),
        hub_offline: hub.offline,
        hub_reachable: !hub.offline && hub_reachable(&hub.endpoint),
        hub_endpoint: hub.endpoint,
        default_model: crate::paths::default_model().map(|p| p.display().to_string()),
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "ftui              {}", self.ftui_version)?;
        writeln!(
            f,
            "libtorch          {} ({})",
            self.libtorch_version, self.libtorch_lib
        )?;
        writeln!(
            f,
            "CUDA              {} ({} devices)",
            yes(self.cuda_available),
            self.cuda_device_count
        )?;
        writeln!(f, "default device    {}", self.device)?;
        writeln!(f, "bf16 works there  {}", yes(self.bf16_supported))?;
        writeln!(f, "CPU threads       {}", self.threads)?;
        writeln!(f, "config folder     {}", self.config_dir)?;
        writeln!(f, "cache folder      {}", self.cache_dir)?;
        writeln!(f, "data folder       {}", self.data_dir)?;
        writeln!(f, "HF cache          {}", self.hf_home)?;
        writeln!(
            f,
            "HF token          {}",
            if self.hf_token_present {
                "configured"
            } else {
                "not configured"
            }
        )?;
        let hub = if self.hub_offline {
            "offline mode (HF_HUB_OFFLINE): cache only".to_string()
        } else if self.hub_reachable {
            "reachable".to_string()
        } else {
            "not reachable (local files and the cache still work)".to_string()
        };
        writeln!(
            f,
            "hub {:<13} {hub}",
            self.hub_endpoint.trim_start_matches("https://")
        )?;
        match &self.default_model {
            Some(p) => write!(f, "default model     {p}"),
            None => write!(
                f,
                "default model     missing: {}",
                crate::paths::default_model_missing()
            ),
        }
    }
}
