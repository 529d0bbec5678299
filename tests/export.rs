//! Export: merged Hugging Face folders against transformers (tests/fixtures/export/,
//! made by tools/make_export_fixtures.py from folders this test's ignored case writes),
//! GGUF files read back by ftui, and Ollama Modelfiles rendered by a Go template engine.

mod common;

use ftui::config::RunConfig;
use ftui::export::gguf::{self, FileType};
use ftui::export::{merged, prepare, ExportError, ExportSource, Prepared};
use ftui::generate::{generate, SamplingParams};
use ftui::model::CausalLm;
use ftui::source::{load_model, ModelSource};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// A tiny model, its adapter and the chat template the "run" used.
struct Case {
    arch: &'static str,
    adapter: &'static str,
    template: Option<&'static str>,
}

const CASES: [Case; 3] = [
    Case {
        arch: "llama",
        adapter: "lora/peft-llama",
        template: None,
    },
    // rsLoRA on every linear, lm_head saved whole; zephyr's turns end with EOS.
    Case {
        arch: "qwen2",
        adapter: "lora/peft-qwen2-rslora-all-linear",
        template: Some("zephyr"),
    },
    // Phi-3's `<|end|>` is text on this vocabulary, not a token.
    Case {
        arch: "phi3",
        adapter: "export/peft-phi3",
        template: Some("phi3"),
    },
];

fn config(case: &Case) -> Option<RunConfig> {
    let template = case.template?;
    let text = format!(
        "[model]\nsource = \"{}\"\ndtype = \"float32\"\n[template]\nchat_template = \"{template}\"\n",
        fixture(&format!("models/{}", case.arch)).display()
    );
    Some(RunConfig::parse(&text, Path::new("test.toml")).expect("config"))
}

fn source(case: &Case) -> ExportSource {
    ExportSource {
        model: fixture(&format!("models/{}", case.arch))
            .display()
            .to_string(),
        adapter: Some(fixture(case.adapter)),
        config: config(case),
    }
}

fn prepared(case: &Case) -> Prepared {
    prepare(&source(case), &mut |_| true).expect("prepare")
}

fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("export/merged-transformers.json"))
        .expect("tests/fixtures/export/merged-transformers.json (tools/make_export_fixtures.py)");
    serde_json::from_str(&text).expect("json")
}

fn ids(g: &serde_json::Value) -> Tensor {
    let v: Vec<i64> = g["input_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_i64().expect("id"))
        .collect();
    Tensor::from_slice(&v).view([1, -1])
}

fn logits(model: &CausalLm, ids: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    model
        .forward(ids, None, None, None)
        .expect("forward")
        .to_kind(Kind::Float)
}

fn recorded(v: &serde_json::Value) -> Tensor {
    let rows: Vec<f32> = v
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| r.as_array().expect("row").iter())
        .map(|x| x.as_f64().expect("f") as f32)
        .collect();
    let n = v.as_array().expect("rows").len() as i64;
    Tensor::from_slice(&rows).view([1, n, -1])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn load_dir(dir: &Path) -> ftui::source::LoadedModel {
    let opts = ftui::model::LoadOptions {
        dtype: ftui::config::DType::Float32,
        ..Default::default()
    };
    load_model(
        &ModelSource::Dir(dir.to_path_buf()),
        &opts,
        &mut |_, _, _| {},
    )
    .expect("load")
}

/// Writes the merged folders tools/make_export_fixtures.py loads in transformers.
#[test]
#[ignore = "run by tools/make_export_fixtures.py"]
fn write_fixture_folders() {
    let out = std::env::var("FTUI_EXPORT_FIXTURES").expect("FTUI_EXPORT_FIXTURES");
    for case in &CASES {
        let dir = Path::new(&out).join(case.arch);
        merged::write_merged(
            &prepared(case),
            &dir,
            merged::DEFAULT_SHARD_BYTES,
            &mut |_| true,
        )
        .expect("export");
    }
    let what = ExportSource {
        model: "default".into(),
        ..Default::default()
    };
    let p = prepare(&what, &mut |_| true).expect("prepare");
    let path = Path::new(&out).join("smollm2-f16.gguf");
    gguf::write_gguf(&p, &path, FileType::F16, &mut |_| true).expect("export");
}

#[test]
fn merged_folders_match_transformers() {
    let g = golden();
    let ids = ids(&g);
    let tmp = tempfile::tempdir().expect("tmp");
    for case in &CASES {
        let expected = &g["models"][case.arch];
        let want = recorded(&expected["logits"]);
        // ftui's base + adapter, unmerged, is what transformers computed from the folder.
        let mut base = load_dir(&fixture(&format!("models/{}", case.arch)));
        ftui::lora::load_adapter(&mut base.model, &fixture(case.adapter), "a").expect("adapter");
        let d = max_diff(&logits(&base.model, &ids), &want);
        assert!(
            d < 1e-3,
            "{}: ftui base+adapter vs transformers: {d}",
            case.arch
        );

        let p = prepared(case);
        let dir = tmp.path().join(case.arch);
        let report = merged::write_merged(&p, &dir, merged::DEFAULT_SHARD_BYTES, &mut |_| true)
            .expect("export");
        assert_eq!(report.shards, 1);
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "chat_template.jinja",
            "generation_config.json",
        ] {
            assert!(report.files.iter().any(|x| x == f), "{}: {f}", case.arch);
        }
        assert!(!tmp.path().join(format!("{}.part", case.arch)).exists());
        let back = load_dir(&dir);
        let d = max_diff(&logits(&back.model, &ids), &want);
        assert!(
            d < 1e-3,
            "{}: exported folder in ftui vs transformers: {d}",
            case.arch
        );

        // The folder's template renders as transformers rendered it from the folder.
        let t = back
            .tokenizer
            .chat_template_with(None)
            .expect("template")
            .expect("a template");
        for r in expected["renders"].as_array().expect("renders") {
            let convo = &g["conversations"][r["conversation"].as_u64().expect("i") as usize];
            let messages = convo.as_array().expect("messages");
            let gen = r["add_generation_prompt"].as_bool().expect("bool");
            let text = t.render(messages, gen).expect("render").text;
            assert_eq!(text, r["text"].as_str().expect("text"), "{}", case.arch);
        }
        // generate() stops at the template's end of turn.
        let gc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("generation_config.json")).expect("gc"),
        )
        .expect("json");
        let eos = &gc["eos_token_id"];
        if let Some(eot) = &p.turns.end_of_turn {
            let listed = eos == &serde_json::json!(eot.id)
                || eos
                    .as_array()
                    .is_some_and(|a| a.contains(&serde_json::json!(eot.id)));
            assert!(listed, "{}: {eos} lacks {}", case.arch, eot.id);
        }
        assert_eq!(
            expected["generation_eos"], *eos,
            "{}: transformers read another EOS list",
            case.arch
        );
    }
}

#[test]
fn a_merged_folder_is_sharded_above_the_limit() {
    let p = prepared(&CASES[0]);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("sharded");
    // Two decoder layers of about 100 kB each: 100 kB shards make several.
    let report = merged::write_merged(&p, &dir, 100_000, &mut |_| true).expect("export");
    assert!(report.shards > 2, "{report:?}");
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("model.safetensors.index.json")).expect("index"),
    )
    .expect("json");
    assert_eq!(
        index["metadata"]["total_size"].as_u64(),
        Some(report.weight_bytes)
    );
    let map = index["weight_map"].as_object().expect("map");
    assert_eq!(map.len(), report.tensors);
    assert!(map.values().any(
        |f| f == &serde_json::json!(format!("model-00002-of-{:05}.safetensors", report.shards))
    ));
    let ids = Tensor::from_slice(&[5i64, 17, 42, 99]).view([1, 4]);
    let one = tmp.path().join("one");
    merged::write_merged(&p, &one, merged::DEFAULT_SHARD_BYTES, &mut |_| true).expect("export");
    let d = max_diff(
        &logits(&load_dir(&dir).model, &ids),
        &logits(&load_dir(&one).model, &ids),
    );
    assert_eq!(d, 0.0);
}

#[test]
fn refusals_say_what_is_wrong() {
    // An adapter made for another base: qwen2's adapter on the llama model.
    let what = ExportSource {
        model: fixture("models/llama").display().to_string(),
        adapter: Some(fixture("lora/peft-qwen2-rslora-all-linear")),
        config: None,
    };
    let e = prepare(&what, &mut |_| true).err().expect("refused");
    assert!(matches!(e, ExportError::AdapterMismatch { .. }), "{e}");
    assert!(e.to_string().contains("does not fit the base model"), "{e}");

    // No chat template: a copy of the llama model whose tokenizer has none.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("base");
    std::fs::create_dir(&dir).expect("dir");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture(&format!("models/llama/{f}")), dir.join(f)).expect("copy");
    }
    let what = ExportSource {
        model: dir.display().to_string(),
        ..Default::default()
    };
    let e = prepare(&what, &mut |_| true).err().expect("refused");
    assert!(matches!(e, ExportError::NoChatTemplate { .. }), "{e}");
    assert!(e.to_string().contains("[template] chat_template"), "{e}");

    // More tokens than embedding rows.
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("models/llama/config.json")).expect("config"),
    )
    .expect("json");
    config["vocab_size"] = serde_json::json!(200);
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    let st = std::fs::read(fixture("models/llama/model.safetensors")).expect("weights");
    let tensors = safetensors::SafeTensors::deserialize(&st).expect("st");
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        let mut shape = view.shape().to_vec();
        let mut data = view.data().to_vec();
        if name == "model.embed_tokens.weight" {
            shape[0] = 200;
            data.truncate(200 * shape[1] * 4);
        }
        owned.push((name, shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("save");
    let what = ExportSource {
        model: dir.display().to_string(),
        config: config_with_template(&dir, "chatml"),
        ..Default::default()
    };
    let e = prepare(&what, &mut |_| true).err().expect("refused");
    assert!(matches!(e, ExportError::VocabTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("300 tokens"), "{e}");
}

fn config_with_template(model: &Path, template: &str) -> Option<RunConfig> {
    let text = format!(
        "[model]\nsource = \"{}\"\n[template]\nchat_template = \"{template}\"\n",
        model.display()
    );
    Some(RunConfig::parse(&text, Path::new("test.toml")).expect("config"))
}

fn load_gguf(path: &Path) -> ftui::source::LoadedModel {
    let opts = ftui::model::LoadOptions {
        dtype: ftui::config::DType::Float32,
        ..Default::default()
    };
    load_model(
        &ModelSource::Gguf(path.to_path_buf()),
        &opts,
        &mut |_, _, _| {},
    )
    .expect("load")
}

#[test]
fn tiny_models_round_trip_through_gguf() {
    let ids = Tensor::from_slice(&[5i64, 17, 42, 99, 150, 7, 250, 3, 64, 128]).view([1, -1]);
    let tmp = tempfile::tempdir().expect("tmp");
    for case in &CASES {
        let p = prepared(case);
        let want = logits(p.model(), &ids);
        let path = tmp.path().join(format!("{}.gguf", case.arch));
        let r = gguf::write_gguf(&p, &path, FileType::F32, &mut |_| true).expect("export");
        assert!(r.fallbacks.is_empty(), "{:?}", r.fallbacks);
        assert!(!ftui::fsutil::partial_path(&path).exists());
        let back = load_gguf(&path);
        let d = max_diff(&logits(&back.model, &ids), &want);
        assert!(d < 1e-4, "{}: GGUF F32 vs merged model: {d}", case.arch);
        // The vocabulary, specials and chat template come back.
        let text = "Hello world, 1234 times!";
        assert_eq!(
            back.tokenizer.encode(text, true).expect("ids"),
            p.loaded.tokenizer.encode(text, true).expect("ids"),
            "{}",
            case.arch
        );
        assert_eq!(
            back.tokenizer.chat_template.as_deref(),
            Some(p.chat_template.as_str())
        );
        let file = ftui::gguf::GgufFile::open(&path).expect("open");
        assert_eq!(
            file.get_str_array("tokenizer.ggml.tokens")
                .expect("tokens")
                .len() as i64,
            p.model().config.vocab_size
        );
        assert_eq!(
            file.get("tokenizer.ggml.eot_token_id")
                .and_then(|v| v.as_u64()),
            p.turns.end_of_turn.as_ref().map(|t| u64::from(t.id)),
            "{}",
            case.arch
        );
        // llama3 rope scaling travels as rope_freqs; phi3 keeps its fused tensors.
        match case.arch {
            "llama" => assert!(file.tensor_info("rope_freqs.weight").is_some()),
            "phi3" => assert!(file.tensor_info("blk.1.attn_qkv.weight").is_some()),
            _ => assert!(file.tensor_info("blk.1.attn_q.bias").is_some()),
        }

        // Smaller types compute nearly the same, relative to the logits' range.
        let scale = want.abs().max().double_value(&[]);
        for (ft, tol) in [(FileType::F16, 2e-3), (FileType::Q8_0, 0.1)] {
            let path = tmp.path().join(format!("{}-{ft}.gguf", case.arch));
            gguf::write_gguf(&p, &path, ft, &mut |_| true).expect("export");
            let d = max_diff(&logits(&load_gguf(&path).model, &ids), &want);
            assert!(
                d < tol * scale,
                "{} {ft}: {d} (logits up to {scale})",
                case.arch
            );
        }
    }
}

/// The embedded default model's greedy answer to the capital-of-France prompt
/// (tests/fixtures/smollm2_gguf.json, as tests/generation.rs uses it).
fn greedy(model: &ftui::source::LoadedModel) -> (Vec<u32>, String) {
    let text = std::fs::read_to_string(fixture("smollm2_gguf.json")).expect("fixture");
    let g: serde_json::Value = serde_json::from_str(&text).expect("json");
    let prompt: Vec<u32> = g["chat"]["input_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect();
    let params = SamplingParams {
        max_new_tokens: g["greedy"]["max_new_tokens"].as_u64().expect("n") as usize,
        ..SamplingParams::default()
    };
    let (out, _) = generate(
        &model.model,
        &model.tokenizer,
        &[prompt],
        &params,
        &mut |_, _| true,
    )
    .expect("generate");
    (out[0].token_ids.clone(), out[0].text.clone())
}

/// Max |ftui - transformers| of the log-probabilities transformers computed from the
/// exported F16 GGUF (tests/fixtures/export/gguf-transformers.json).
fn logprob_difference(model: &CausalLm) -> f64 {
    let text = std::fs::read_to_string(fixture("export/gguf-transformers.json")).expect("fixture");
    let g: serde_json::Value = serde_json::from_str(&text).expect("json");
    let ids: Vec<u32> = g["token_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect();
    let want: Vec<f64> = g["logprobs"]
        .as_array()
        .expect("logprobs")
        .iter()
        .map(|x| x.as_f64().expect("f"))
        .collect();
    let s = ftui::score::score(model, &ids).expect("score");
    assert_eq!(s.logprobs.len(), want.len());
    s.logprobs
        .iter()
        .zip(&want)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn the_default_model_answers_the_same_from_its_exports() {
    let what = ExportSource {
        model: "default".into(),
        ..Default::default()
    };
    let p = prepare(&what, &mut |_| true).expect("prepare");
    let (source_ids, source_text) = greedy(&p.loaded);
    assert!(source_text.contains("Paris"), "{source_text}");
    let tmp = tempfile::tempdir().expect("tmp");
    for ft in [
        FileType::F16,
        FileType::Q8_0,
        FileType::Q4_0,
        FileType::Q4_K_M,
    ] {
        let path = tmp.path().join(format!("smollm2-{ft}.gguf"));
        let r = gguf::write_gguf(&p, &path, ft, &mut |_| true).expect("export");
        let back = load_gguf(&path);
        let (ids, text) = greedy(&back);
        match ft {
            FileType::F16 => {
                assert_eq!(ids, source_ids, "{ft}: {text}");
                // transformers' GGUF loader read this file (tools/make_export_fixtures.py):
                // its log-probabilities are ftui's on the source and on the export.
                for (what, model) in [("source", &p.loaded), ("export", &back)] {
                    let d = logprob_difference(&model.model);
                    assert!(
                        d < 0.05,
                        "{what}: transformers on the F16 GGUF differs by {d}"
                    );
                }
            }
            _ => assert!(text.contains("Paris"), "{ft}: {text}"),
        }
        if ft == FileType::Q4_K_M {
            // 576-wide rows fall back to Q4_0; the 1536-wide ffn_down rows take Q4_K.
            assert!(!r.fallbacks.is_empty());
            let file = ftui::gguf::GgufFile::open(&path).expect("open");
            let ty = |n: &str| file.tensor_info(n).map(|t| t.ggml_type);
            assert_eq!(
                ty("blk.4.ffn_down.weight"),
                Some(ftui::gguf::GgmlType::Q4_K)
            );
            assert_eq!(ty("blk.4.attn_q.weight"), Some(ftui::gguf::GgmlType::Q4_0));
            assert_eq!(file.get_u64("general.file_type").ok(), Some(15));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Ollama Modelfile: the TEMPLATE, rendered by a Go text/template engine with Ollama's
// data, equals the chat template's rendering.

/// Go's `slice` builtin (gtmpl lacks it): `slice x i` is `x[i:]`.
fn go_slice(args: &[gtmpl::Value]) -> Result<gtmpl::Value, gtmpl::FuncError> {
    match args {
        [gtmpl::Value::Array(items), gtmpl::Value::Number(n)] => {
            let i = n.as_u64().unwrap_or(0) as usize;
            Ok(gtmpl::Value::Array(
                items.get(i..).unwrap_or_default().to_vec(),
            ))
        }
        _ => Err(gtmpl::FuncError::Generic(
            "slice: expected a list and an index".into(),
        )),
    }
}

/// What Ollama hands a template for a chat (`template.Execute`): `.Messages` with
/// consecutive messages of one role joined by a blank line (`collate`), `.System` the
/// system messages joined alike, `.Response` empty.
fn ollama_render(template: &str, messages: &[serde_json::Value]) -> String {
    use gtmpl::Value as V;
    use std::collections::HashMap;
    let mut collated: Vec<(String, String)> = Vec::new();
    let mut system = Vec::new();
    for m in messages {
        let role = m["role"].as_str().expect("role").to_string();
        let content = m["content"].as_str().expect("content").to_string();
        if role == "system" {
            system.push(content.clone());
        }
        match collated.last_mut() {
            Some((r, c)) if *r == role => *c = format!("{c}\n\n{content}"),
            _ => collated.push((role, content)),
        }
    }
    let msgs = collated
        .into_iter()
        .map(|(role, content)| {
            V::Object(HashMap::from([
                ("Role".to_string(), V::String(role)),
                ("Content".to_string(), V::String(content)),
            ]))
        })
        .collect();
    let data = V::Object(HashMap::from([
        ("Messages".to_string(), V::Array(msgs)),
        ("System".to_string(), V::String(system.join("\n\n"))),
        ("Response".to_string(), V::String(String::new())),
    ]));
    let mut t = gtmpl::Template::default();
    t.add_func("slice", go_slice);
    t.parse(template).expect("the Go template parses");
    t.render(&gtmpl::Context::from(data))
        .expect("the Go template renders")
}

fn conversations() -> Vec<Vec<serde_json::Value>> {
    let m = |role: &str, content: &str| serde_json::json!({"role": role, "content": content});
    vec![
        vec![m("user", "What is the capital of France?")],
        vec![m("system", "Answer in French."), m("user", "Hello")],
        vec![
            m("user", "Hi"),
            m("assistant", "Hello! How can I help?"),
            m("user", "Tell me a joke.\nA short one."),
        ],
        vec![
            m("system", "You are terse."),
            m("user", "1+1?"),
            m("assistant", "2"),
            m("user", "2+2?"),
        ],
    ]
}

#[test]
fn modelfile_templates_render_like_the_chat_templates() {
    use ftui::export::modelfile::translate;
    use ftui::template::{builtin, ChatTemplate, SpecialTokens};
    let smollm2 = std::fs::read_to_string(fixture("smollm2_gguf.json")).expect("fixture");
    let smollm2: serde_json::Value = serde_json::from_str(&smollm2).expect("json");
    let smollm2 = smollm2["chat_template"]
        .as_str()
        .expect("template")
        .to_string();
    let specials = |bos: &str, eos: &str| SpecialTokens {
        bos: Some(bos.into()),
        eos: Some(eos.into()),
        ..Default::default()
    };
    let cases = [
        ("chatml", builtin("chatml").expect("b").to_string(), specials("<s>", "<|im_end|>"), false),
        ("llama3", builtin("llama3").expect("b").to_string(), specials("<|begin_of_text|>", "<|eot_id|>"), true),
        // Without add_bos the Go template writes BOS itself.
        ("llama3", builtin("llama3").expect("b").to_string(), specials("<|begin_of_text|>", "<|eot_id|>"), false),
        ("phi3", builtin("phi3").expect("b").to_string(), specials("<s>", "<|endoftext|>"), false),
        ("mistral", builtin("mistral").expect("b").to_string(), specials("<s>", "</s>"), true),
        ("zephyr", builtin("zephyr").expect("b").to_string(), specials("<s>", "</s>"), false),
        // zephyr on a vocabulary whose EOS is another text.
        ("zephyr", builtin("zephyr").expect("b").to_string(), specials("<|im_start|>", "<|im_end|>"), false),
        ("SmolLM2", smollm2, specials("<|im_start|>", "<|im_end|>"), false),
        // The tiny models' ChatML, spelled differently from the built-in.
        ("chatml", "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}".to_string(), specials("<s>", "<|im_end|>"), false),
    ];
    for (name, source, special, adds_bos) in cases {
        let t = ChatTemplate::new(&source, &special).expect("compiles");
        let go = translate(&t, &special, adds_bos).expect("translates");
        assert_eq!(go.like, name);
        let eos = special.eos.clone().expect("eos");
        assert!(
            go.stops.contains(&eos) || name == "llama3" || name == "chatml" || name == "SmolLM2",
            "{name}: {:?}",
            go.stops
        );
        for conv in conversations() {
            let mut want = t.render(&conv, true).expect("jinja").text;
            if adds_bos {
                // llama.cpp adds BOS when it tokenizes the prompt.
                want = want
                    .strip_prefix(special.bos.as_deref().expect("bos"))
                    .expect("starts with BOS")
                    .to_string();
            }
            assert_eq!(
                ollama_render(&go.template, &conv),
                want,
                "{name} ({adds_bos})"
            );
        }
    }
    // A template ftui has no Go twin for is refused with the reason.
    let odd = ChatTemplate::new(
        "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}### assistant:",
        &specials("<s>", "</s>"),
    )
    .expect("compiles");
    let e = translate(&odd, &specials("<s>", "</s>"), false).expect_err("refused");
    assert!(matches!(e, ExportError::Untranslatable(_)), "{e}");
    assert!(
        e.to_string()
            .contains("write the Modelfile's TEMPLATE by hand"),
        "{e}"
    );
}

#[test]
fn a_modelfile_names_the_gguf_template_stops_system_and_sampling() {
    let mut case_config = config(&CASES[2]).expect("phi3 config");
    case_config.data = Some(
        toml::from_str("source = \"data.jsonl\"\nsystem_prompt = \"You are Yoda.\"").expect("data"),
    );
    case_config.generation.temperature = 0.7;
    let what = ExportSource {
        config: Some(case_config),
        ..source(&CASES[2])
    };
    let p = prepare(&what, &mut |_| true).expect("prepare");
    let tmp = tempfile::tempdir().expect("tmp");
    let gguf_path = tmp.path().join("model.gguf");
    let mf = tmp.path().join("Modelfile");
    let text = ftui::export::modelfile::for_gguf(&p, &mf, &gguf_path).expect("modelfile");
    assert!(text.contains("FROM ./model.gguf\n"), "{text}");
    assert!(
        text.contains("TEMPLATE \"\"\"{{- range .Messages }}<|{{ .Role }}|>"),
        "{text}"
    );
    for stop in ["<|end|>", "<|user|>", "<|im_end|>"] {
        assert!(
            text.contains(&format!("PARAMETER stop \"{stop}\"\n")),
            "{stop}: {text}"
        );
    }
    assert!(text.contains("PARAMETER temperature 0.7\n"), "{text}");
    assert!(
        text.contains("SYSTEM \"\"\"You are Yoda.\"\"\"\n"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Quantizers: byte for byte as gguf-py and llama.cpp's C reference quantize
// (tests/fixtures/export/quants.safetensors, tools/make_quant_fixtures_gguf.py).

#[test]
fn quantized_blocks_equal_the_reference_quantizers() {
    use ftui::gguf::quantize::quantize;
    use ftui::gguf::GgmlType;
    let bytes = std::fs::read(fixture("export/quants.safetensors")).expect("fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let input = st.tensor("input").expect("input");
    let width = input.shape()[1];
    let rows: Vec<Vec<f32>> = input
        .data()
        .chunks_exact(4 * width)
        .map(|r| {
            r.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect();
    let mut checked = 0;
    for (key, ty) in [
        ("gguf-py.F16", GgmlType::F16),
        ("gguf-py.BF16", GgmlType::BF16),
        ("gguf-py.Q8_0", GgmlType::Q8_0),
        ("gguf-py.Q4_0", GgmlType::Q4_0),
        ("ggml.Q8_0", GgmlType::Q8_0),
        ("ggml.Q4_0", GgmlType::Q4_0),
        ("ggml.Q4_K", GgmlType::Q4_K),
        ("ggml.Q6_K", GgmlType::Q6_K),
    ] {
        let want = st.tensor(key).expect(key);
        let per_row = want.data().len() / rows.len();
        for (i, row) in rows.iter().enumerate() {
            let got = quantize(ty, row).expect("quantizes");
            let expected = &want.data()[i * per_row..(i + 1) * per_row];
            if got != expected {
                let block = ty.type_size();
                let first = got
                    .chunks(block)
                    .zip(expected.chunks(block))
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!(
                    "{key}, row {i}: block {first} differs: {:?} != {:?}",
                    &got[first * block..(first + 1) * block],
                    &expected[first * block..(first + 1) * block]
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 8 * rows.len());
}

// ---------------------------------------------------------------------------------------
// The command line.

fn ftui_cli(args: &[&str], home: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ftui"))
        .args(args)
        .env("FTUI_HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("runs ftui")
}

#[test]
fn ftui_export_writes_what_it_says_and_refuses_in_one_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = fixture("models/llama").display().to_string();
    let adapter = fixture("lora/peft-llama").display().to_string();
    let gguf_path = tmp.path().join("out/model.gguf");
    let mf = tmp.path().join("out/Modelfile");
    let o = ftui_cli(
        &[
            "export",
            "--model",
            &model,
            "--adapter",
            &adapter,
            "--gguf",
            gguf_path.to_str().expect("utf-8"),
            "--type",
            "q8_0",
            "--modelfile",
            mf.to_str().expect("utf-8"),
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(v["format"], "gguf");
    assert_eq!(v["type"], "Q8_0");
    // 64-wide rows are whole Q8_0 blocks: nothing falls back.
    assert_eq!(v["fallbacks"], serde_json::json!([]));
    assert_eq!(
        std::fs::metadata(&gguf_path).expect("gguf").len(),
        v["bytes"].as_u64().expect("bytes")
    );
    let text = std::fs::read_to_string(&mf).expect("Modelfile");
    assert!(text.contains("FROM ./model.gguf"), "{text}");

    let dir = tmp.path().join("merged");
    let o = ftui_cli(
        &[
            "export",
            "--model",
            &model,
            "--merged",
            dir.to_str().expect("utf-8"),
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["format"], "merged");
    assert!(dir.join("chat_template.jinja").is_file());

    // A Modelfile for a template ftui cannot translate: refused before any GGUF is written.
    let odd = tmp.path().join("odd.toml");
    std::fs::write(
        &odd,
        format!(
            "[model]\nsource = \"{model}\"\n[template]\nchat_template = \"{{% for m in messages %}}## {{{{ m.content }}}}{{% endfor %}}\"\n"
        ),
    )
    .expect("config");
    let refused = tmp.path().join("refused.gguf");
    let o = ftui_cli(
        &[
            "--config",
            odd.to_str().expect("utf-8"),
            "export",
            "--gguf",
            refused.to_str().expect("utf-8"),
            "--modelfile",
            tmp.path().join("M").to_str().expect("utf-8"),
        ],
        tmp.path(),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Modelfile"), "{err}");
    assert!(!refused.exists() && !ftui::fsutil::partial_path(&refused).exists());
    // --type needs --gguf; one of --merged/--gguf is required.
    let o = ftui_cli(&["export", "--model", &model], tmp.path());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_stopped_export_leaves_nothing_that_looks_finished() {
    let p = prepared(&CASES[0]);
    let tmp = tempfile::tempdir().expect("tmp");
    let stop_after = |n: u64| move |pr: &ftui::export::Progress| pr.done < n;
    let path = tmp.path().join("m.gguf");
    let e = gguf::write_gguf(&p, &path, FileType::F16, &mut stop_after(3)).expect_err("stopped");
    assert!(matches!(e, ExportError::Stopped), "{e}");
    let dir = tmp.path().join("merged");
    let e = merged::write_merged(&p, &dir, merged::DEFAULT_SHARD_BYTES, &mut stop_after(3))
        .expect_err("stopped");
    assert!(matches!(e, ExportError::Stopped), "{e}");
    // A folder from an earlier export stays as it was.
    merged::write_merged(&p, &dir, merged::DEFAULT_SHARD_BYTES, &mut |_| true).expect("export");
    let before = std::fs::read(dir.join("model.safetensors")).expect("weights");
    let e = merged::write_merged(&p, &dir, 100_000, &mut stop_after(5)).expect_err("stopped");
    assert!(matches!(e, ExportError::Stopped), "{e}");
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).expect("weights"),
        before
    );
    let left: Vec<String> = ftui::fsutil::relative_files(tmp.path(), false);
    assert!(
        left.iter()
            .all(|f| f.starts_with("merged/") && !f.contains("-of-")),
        "{left:?}"
    );
}

#[test]
fn a_qlora_base_is_dequantized_into_the_merged_folder() {
    let text = format!(
        "[model]\nsource = \"{}\"\ndtype = \"float32\"\n[quantization]\nload_in_4bit = true\nbnb_4bit_compute_dtype = \"float32\"\n",
        fixture("models/llama").display()
    );
    let what = ExportSource {
        config: Some(RunConfig::parse(&text, Path::new("q.toml")).expect("config")),
        ..source(&CASES[0])
    };
    let p = prepare(&what, &mut |_| true).expect("prepare");
    // Layers the adapter touched were dequantized by the merge; the others still are 4-bit.
    assert!(p
        .model()
        .linears()
        .iter()
        .any(|(_, l)| l.weight.is_quantized()));
    let ids = Tensor::from_slice(&[5i64, 17, 42, 99, 150, 7]).view([1, -1]);
    let want = logits(p.model(), &ids);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("merged");
    merged::write_merged(&p, &dir, merged::DEFAULT_SHARD_BYTES, &mut |_| true).expect("export");
    let d = max_diff(&logits(&load_dir(&dir).model, &ids), &want);
    assert!(d < 1e-4, "{d}");
    // ... and differs from the full-precision base + adapter by the 4-bit rounding.
    let full = prepared(&CASES[0]);
    assert!(max_diff(&logits(full.model(), &ids), &want) > 1e-3);
}

#[test]
fn a_hub_model_exports_in_its_own_dtype() {
    let env = common::Env::clean();
    let hub = common::FakeHub::start();
    let dir = fixture("models/qwen2");
    let mut files: Vec<(String, Vec<u8>)> = [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(dir.join(f)).expect("fixture")))
    .collect();
    // The hub's copy says bfloat16 (its weights are float32; the loader converts).
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config"))
            .expect("json");
    config["dtype"] = serde_json::json!("bfloat16");
    files.push(("config.json".into(), config.to_string().into_bytes()));
    hub.publish(
        common::RepoType::Model,
        "tiny/qwen2",
        "a".repeat(40).as_str(),
        files,
    );
    let tmp = tempfile::tempdir().expect("tmp");
    env.set("HF_ENDPOINT", hub.endpoint() + "/");
    env.set("HF_HOME", tmp.path().join("home"));
    env.set("HF_HUB_CACHE", tmp.path().join("cache"));
    let what = ExportSource {
        model: "tiny/qwen2".into(),
        ..Default::default()
    };
    let p = prepare(&what, &mut |_| true).expect("prepare");
    let out = tmp.path().join("merged");
    let r =
        merged::write_merged(&p, &out, merged::DEFAULT_SHARD_BYTES, &mut |_| true).expect("export");
    assert_eq!(r.dtype, "bfloat16");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(written["dtype"], "bfloat16");
    assert_eq!(written["torch_dtype"], "bfloat16");
    let ids = Tensor::from_slice(&[5i64, 17, 42]).view([1, -1]);
    let d = max_diff(
        &logits(&load_dir(&out).model, &ids),
        &logits(p.model(), &ids),
    );
    assert!(d < 0.1, "bf16 rounding only: {d}");
}
