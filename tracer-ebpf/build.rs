//! Rebuild the BPF object when the linker changes (a new bpf-linker can change output).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
