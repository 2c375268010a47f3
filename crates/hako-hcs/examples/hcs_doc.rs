//! Development helper: `cargo run -p hako-hcs --example hcs_doc -- BUNDLE [json|text] [hyperv]`
//! prints what `hako hcs-doc` prints, without the hako binary.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bundle = args.get(1).map(String::as_str).unwrap_or(".");
    let mut opts = hako_hcs::HcsDocOptions::default();
    if let Some(f) = args.get(2) {
        opts.format = f.parse().unwrap_or_default();
    }
    if args.get(3).map(String::as_str) == Some("hyperv") {
        opts.isolation = Some(hako_hcs::Isolation::Hyperv);
    }
    match hako_hcs::hcs_doc(std::path::Path::new(bundle), &opts) {
        Ok(s) => print!("{}", s),
        Err(e) => {
            eprintln!("error: {}", e);
            std::process::exit(1);
        }
    }
}
