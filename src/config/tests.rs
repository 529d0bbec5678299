use super::*;

fn parse(text: &str) -> Result<RunConfig, ConfigError> {
    RunConfig::parse(text, Path::new("test.toml"))
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_gets_hugging_face_defaults() {
    let c = parse("[model]\nsource = \"default\"\n").expect("parses");
    assert_eq!(c.model.dtype, DType::Auto);
    assert_eq!(c.model.attn_implementation, AttnImplementation::Sdpa);
    assert!(c.lora.is_none() && c.data.is_none() && c.quantization.is_none());
    assert_eq!(c.training.max_length, 1024);
    assert_eq!(c.training.learning_rate, 2e-5);
    assert_eq!(c.training.max_grad_norm, 1.0);
    assert_eq!(c.training.max_steps, -1);
    assert_eq!(c.generation.top_k, 50);
}

#[test]
fn lora_and_quantization_defaults_match_peft_and_bitsandbytes() {
    let c = parse("[model]\nsource = \"x\"\n[lora]\n[quantization]\nload_in_4bit = true\n")
        .expect("parses");
    let l = c.lora.expect("lora");
    assert_eq!((l.r, l.lora_alpha, l.lora_dropout), (8, 8.0, 0.0));
    assert_eq!(l.bias, LoraBias::None);
    assert_eq!(l.init_lora_weights, InitLoraWeights::Flag(true));
    let q = c.quantization.expect("quantization");
    assert_eq!(q.bnb_4bit_quant_type, QuantType::Fp4);
    assert_eq!(q.bnb_4bit_compute_dtype, DType::Float32);
    assert!(!q.bnb_4bit_use_double_quant);
}

#[test]
fn unknown_key_names_key_and_line() {
    let e = err("[model]\nsource = \"x\"\n\n[lora]\nr = 8\nrank = 4\n");
    assert!(e.starts_with("test.toml:6: "), "{e}");
    assert!(e.contains("rank"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn wrong_type_names_key_and_line() {
    let e = err("[model]\nsource = \"x\"\n[lora]\nr = \"eight\"\n");
    assert!(e.starts_with("test.toml:4: [lora] r:"), "{e}");
    let e = err("[model]\nsource = \"x\"\n[training]\npacking = 3\n");
    assert!(e.starts_with("test.toml:4: [training] packing:"), "{e}");
}

#[test]
fn bad_enum_value_lists_choices() {
    let e = err("[model]\nsource = \"x\"\n[quantization]\nbnb_4bit_quant_type = \"nf8\"\n");
    assert!(
        e.starts_with("test.toml:4: [quantization] bnb_4bit_quant_type:"),
        "{e}"
    );
    assert!(e.contains("nf4"), "{e}");
}

#[test]
fn value_checks_name_key_and_line() {
    let e = err("[model]\nsource = \"x\"\n[training]\nlearning_rate = -1.0\n");
    assert!(
        e.starts_with("test.toml:4: [training] learning_rate:"),
        "{e}"
    );
    let e = err("[model]\nsource = \"x\"\ndevice = \"gpu0\"\n");
    assert!(e.starts_with("test.toml:3: [model] device:"), "{e}");
    let e =
        err("[model]\nsource = \"x\"\n[quantization]\nload_in_4bit = true\nload_in_8bit = true\n");
    assert!(
        e.starts_with("test.toml:5: [quantization] load_in_8bit:"),
        "{e}"
    );
}

#[test]
fn missing_model_section_is_named() {
    let e = err("[lora]\nr = 8\n");
    assert!(e.contains("model"), "{e}");
}

#[test]
fn target_modules_accepts_list_or_string() {
    let c = parse("[model]\nsource = \"x\"\n[lora]\ntarget_modules = [\"q_proj\", \"v_proj\"]\n")
        .expect("list");
    assert_eq!(
        c.lora.expect("lora").target_modules,
        Some(TargetModules::Names(vec!["q_proj".into(), "v_proj".into()]))
    );
    let c = parse("[model]\nsource = \"x\"\n[lora]\ntarget_modules = \"all-linear\"\n")
        .expect("string");
    assert_eq!(
        c.lora.expect("lora").target_modules,
        Some(TargetModules::Pattern("all-linear".into()))
    );
}

#[test]
fn save_then_load_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.toml");
    let c = parse(
        "[model]\nsource = \"x\"\n[lora]\nr = 16\nlora_alpha = 32\n[data]\nsource = \"d.jsonl\"\ncolumns = { sentence = \"prompt\" }\n",
    )
    .expect("parses");
    c.save(&path).expect("saves");
    assert_eq!(RunConfig::load(&path).expect("loads"), c);
}

/// The keys serde accepts in a section, read from its "expected ..." message.
fn accepted_keys(section: &str) -> Vec<String> {
    let text = format!("[model]\nsource = \"x\"\n[{section}]\nsource = \"x\"\nzz_not_a_key = 1\n");
    let text = text.replacen("[model]\nsource = \"x\"\n[model]\n", "[model]\n", 1);
    let e = err(&text);
    let list = e
        .split_once("expected")
        .map(|(_, list)| list)
        .unwrap_or_else(|| panic!("{e}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_accepted_key_has_help_and_every_help_is_a_key() {
    let sections = [
        "model",
        "quantization",
        "lora",
        "data",
        "template",
        "training",
        "generation",
        "ui",
    ];
    let mut count = 0;
    for s in sections {
        let keys = accepted_keys(s);
        assert!(!keys.is_empty(), "{s}");
        for k in &keys {
            assert!(field_doc(s, k).is_some(), "no help for [{s}] {k}");
            count += 1;
        }
        for f in FIELDS.iter().filter(|f| f.section == s) {
            assert!(
                keys.iter().any(|k| k == f.key),
                "help for unknown key [{s}] {}",
                f.key
            );
        }
    }
    assert_eq!(count, FIELDS.len());
}

#[test]
fn sample_configs_load() {
    for name in ["ftui.toml", "phi3-yoda.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sample-data")
            .join(name);
        RunConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}
