//! Gives the `ftui` binary an rpath to the libtorch folder that torch-sys linked
//! against, so it runs without `LD_LIBRARY_PATH`. torch-sys publishes that folder
//! as `cargo:libtorch_lib` metadata, which reaches direct dependents as
//! `DEP_TCH_LIBTORCH_LIB`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=FTUI_LIBTORCH_LIB={dir}");
    }
}
