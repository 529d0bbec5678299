//! Reading weights: memory-mapped safetensors (single file or sharded with an
//! index), GGUF files, or tensors already in memory (tests build tiny models
//! without files), converted to the kind and device the model runs in.

use super::ModelError;
use crate::gguf::{GgufFile, HfTensors};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Where tensors come from, by Hugging Face name.
pub enum WeightSource {
    Safetensors {
        /// Each shard's mapping, kept alive while tensors are read from it.
        shards: Vec<(PathBuf, Mmap)>,
        /// Tensor name -> shard index.
        index: HashMap<String, usize>,
    },
    Gguf {
        tensors: Box<HfTensors>,
        path: PathBuf,
    },
    /// Tensors by Hugging Face name.
    Memory(HashMap<String, Tensor>),
}

fn st_kind(dtype: safetensors::Dtype) -> Option<Kind> {
    use safetensors::Dtype as D;
    Some(match dtype {
        D::F32 => Kind::Float,
        D::F16 => Kind::Half,
        D::BF16 => Kind::BFloat16,
        D::F64 => Kind::Double,
        D::I64 => Kind::Int64,
        D::I32 => Kind::Int,
        D::I16 => Kind::Int16,
        D::I8 => Kind::Int8,
        D::U8 => Kind::Uint8,
        D::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn map_file(path: &Path) -> Result<Mmap, ModelError> {
    let f = std::fs::File::open(path)
        .map_err(|e| ModelError::file(path, format!("cannot open: {e}")))?;
    // SAFETY: the file is opened read-only and mapped privately; a concurrent
    // writer could change bytes under us, which is the usual mmap caveat of every
    // safetensors reader (transformers included).
    unsafe { Mmap::map(&f) }.map_err(|e| ModelError::file(path, format!("cannot map: {e}")))
}

impl WeightSource {
    /// Opens `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json`, in `dir`.
    pub fn safetensors_dir(dir: &Path) -> Result<Self, ModelError> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.is_file() {
            index_shards(&index_path)?
                .into_iter()
                .map(|s| dir.join(s))
                .collect()
        } else {
            let single = dir.join("model.safetensors");
            if single.is_file() {
                vec![single]
            } else {
                let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|e| ModelError::file(dir, e.to_string()))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                    .collect();
                all.sort();
                if all.is_empty() {
                    return Err(ModelError::file(
                        dir,
                        "no model.safetensors, index or *.safetensors file in this folder".into(),
                    ));
                }
                all
            }
        };
        Self::safetensors_files(&files)
    }

    pub fn safetensors_files(files: &[PathBuf]) -> Result<Self, ModelError> {
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let map = map_file(path)?;
            let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| {
                ModelError::file(path, format!("not a valid safetensors file: {e}"))
            })?;
            for name in st.names() {
                index.insert(name.to_string(), i);
            }
            shards.push((path.clone(), map));
        }
        Ok(WeightSource::Safetensors { shards, index })
    }

    /// The tensors of a GGUF file under their Hugging Face names and layouts.
    pub fn gguf(path: &Path, file: GgufFile) -> Result<Self, ModelError> {
        let tensors = HfTensors::new(file).map_err(|e| ModelError::Other(e.to_string()))?;
        Ok(WeightSource::Gguf {
            tensors: Box::new(tensors),
            path: path.to_path_buf(),
        })
    }

    /// Tensors already in memory, by Hugging Face name.
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Self {
        WeightSource::Memory(tensors)
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            WeightSource::Safetensors { index, .. } => index.contains_key(name),
            WeightSource::Gguf { tensors, .. } => tensors.contains(name),
            WeightSource::Memory(tensors) => tensors.contains_key(name),
        }
    }

    /// Every tensor name, in Hugging Face spelling.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = match self {
            WeightSource::Safetensors { index, .. } => index.keys().cloned().collect(),
            WeightSource::Gguf { tensors, .. } => tensors.names().map(String::from).collect(),
            WeightSource::Memory(tensors) => tensors.keys().cloned().collect(),
        };
        v.sort();
        v
    }

    fn source_path(&self) -> PathBuf {
        match self {
            WeightSource::Safetensors { shards, .. } => {
                shards.first().map(|s| s.0.clone()).unwrap_or_default()
            }
            WeightSource::Gguf { path, .. } => path.clone(),
            WeightSource::Memory(_) => PathBuf::from("(in memory)"),
        }
    }

    /// Reads tensor `name` as `kind` on `device`.
    pub fn tensor(&self, name: &str, kind: Kind, device: Device) -> Result<Tensor, ModelError> {
        let missing = || ModelError::MissingTensor {
            file: self.source_path().display().to_string(),
            name: name.to_string(),
        };
        let t = match self {
            WeightSource::Safetensors { shards, index } => {
                let i = *index.get(name).ok_or_else(missing)?;
                let (path, map) = &shards[i];
                let st = safetensors::SafeTensors::deserialize(map)
                    .map_err(|e| ModelError::file(path, e.to_string()))?;
                let view = st.tensor(name).map_err(|_| missing())?;
                let src_kind = st_kind(view.dtype()).ok_or_else(|| {
                    ModelError::file(
                        path,
                        format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()),
                    )
                })?;
                let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                Tensor::f_from_data_size(view.data(), &shape, src_kind)?
            }
            WeightSource::Gguf { tensors, .. } => {
                if !tensors.contains(name) {
                    return Err(missing());
                }
                // In the checkpoint's layout: llama.cpp's q/k permutation is undone.
                let (data, shape) = tensors
                    .dequantize(name)
                    .map_err(|e| ModelError::Other(e.to_string()))?;
                let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                Tensor::f_from_slice(&data)?.f_view(shape.as_slice())?
            }
            WeightSource::Memory(tensors) => tensors.get(name).ok_or_else(missing)?.f_detach()?,
        };
        Ok(t.f_to_device(device)?.f_to_kind(kind)?)
    }
}

/// The shard files a `model.safetensors.index.json` names.
pub fn index_shards(index: &Path) -> Result<Vec<String>, ModelError> {
    let text =
        std::fs::read_to_string(index).map_err(|e| ModelError::file(index, e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(index, format!("not valid JSON: {e}")))?;
    let mut shards: Vec<String> = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::file(index, "has no weight_map".into()))?
        .values()
        .filter_map(|f| f.as_str().map(String::from))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}
