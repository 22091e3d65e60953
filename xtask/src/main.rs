//! `cargo xtask site`: builds the browser bundle without installing cargo-leptos or the
//! wasm-bindgen CLI (neither installs offline here on Rust 1.95; see docs/architecture.md).
//!
//! Steps, the same ones cargo-leptos runs: compile `frontend` to wasm32, generate the JS glue
//! with the `wasm-bindgen-cli-support` library (pinned to the crate's exact version), shrink the
//! wasm with `wasm-opt` when one is available, bundle the stylesheet, copy `public/`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Must match `BUNDLE_NAME` in the server and `LEPTOS_OUTPUT_NAME` in `.cargo/config.toml`.
const BUNDLE: &str = "opsdeck";

#[derive(Parser)]
#[command(name = "xtask", about = "opsdeck build steps")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the site folder: pkg/opsdeck.{js,wasm,css} and the public assets.
    Site {
        /// Cargo profile for the wasm: `wasm-release` (small, slower to build) or `dev`.
        #[arg(long, default_value = "wasm-release")]
        profile: String,
        /// Where to write the site.
        #[arg(long, default_value = "target/site")]
        out: PathBuf,
        /// The wasm-opt binary; without it, wasm-opt is looked up on PATH and in .tools/, and
        /// skipped with a warning if absent (the bundle works, it is just ~2x larger).
        #[arg(long, env = "WASM_OPT")]
        wasm_opt: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let Cli { command: Task::Site { profile, out, wasm_opt } } = Cli::parse();
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    let pkg = out.join("pkg");
    fs::create_dir_all(&pkg).with_context(|| format!("cannot create {}", pkg.display()))?;

    let wasm = build_wasm(&profile)?;
    step(&format!("generating JS bindings for {}", wasm.display()));
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)?
        .typescript(false)
        .out_name(BUNDLE)
        .generate(&pkg)
        .context(
            "wasm-bindgen failed (is the wasm-bindgen crate pinned to the same version as wasm-bindgen-cli-support?)",
        )?;
    let bundle = pkg.join(format!("{BUNDLE}.wasm"));
    fs::rename(pkg.join(format!("{BUNDLE}_bg.wasm")), &bundle)?;
    optimise(&bundle, wasm_opt.or_else(find_wasm_opt))?;

    let css = bundle_css(Path::new("style/main.css"))?;
    fs::write(pkg.join(format!("{BUNDLE}.css")), css)?;
    copy_dir(Path::new("public"), &out)?;
    for name in ["js", "wasm", "css"] {
        precompress(&pkg.join(format!("{BUNDLE}.{name}")))?;
    }
    step(&format!("site ready in {}", out.display()));
    Ok(())
}

fn step(message: &str) {
    eprintln!("xtask: {message}");
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest.parent().context("xtask lives inside the workspace")?.to_path_buf())
}

fn build_wasm(profile: &str) -> anyhow::Result<PathBuf> {
    step(&format!("compiling the frontend to wasm32 (profile {profile}); the first build takes a few minutes"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--package", "frontend", "--lib", "--target", "wasm32-unknown-unknown", "--profile", profile])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("the wasm build failed (is the target installed? `rustup target add wasm32-unknown-unknown`)");
    }
    let dir = if profile == "dev" { "debug" } else { profile };
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Ok(PathBuf::from(target).join("wasm32-unknown-unknown").join(dir).join("frontend.wasm"))
}

fn find_wasm_opt() -> Option<PathBuf> {
    let local = PathBuf::from(".tools/node_modules/.bin/wasm-opt");
    if local.is_file() {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("wasm-opt")).find(|p| p.is_file())
}

/// Shrinks the wasm in place. Debian bookworm's binaryen 108 breaks Leptos bundles
/// (`WebAssembly.Table.set(): Argument 1 is invalid`); npm's binaryen@132 is the one to use.
fn optimise(wasm: &Path, wasm_opt: Option<PathBuf>) -> anyhow::Result<()> {
    let before = fs::metadata(wasm)?.len();
    let Some(wasm_opt) = wasm_opt else {
        step(&format!("wasm-opt not found: leaving the wasm unoptimised ({} KB)", before / 1024));
        return Ok(());
    };
    step(&format!("optimising the wasm with {}", wasm_opt.display()));
    let optimised = wasm.with_extension("opt.wasm");
    let status = Command::new(&wasm_opt)
        .args([
            "-Oz",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
        ])
        .arg(wasm)
        .arg("-o")
        .arg(&optimised)
        .status()
        .with_context(|| format!("cannot run {}", wasm_opt.display()))?;
    if !status.success() {
        bail!("wasm-opt failed on {}", wasm.display());
    }
    fs::rename(&optimised, wasm)?;
    step(&format!("wasm: {} KB → {} KB", before / 1024, fs::metadata(wasm)?.len() / 1024));
    Ok(())
}

/// Inlines `@import "partial.css";` lines (one level, relative to the entry file), so the
/// stylesheet is one request, with partials per feature in the source tree.
fn bundle_css(entry: &Path) -> anyhow::Result<String> {
    let dir = entry.parent().unwrap_or(Path::new("."));
    let source = fs::read_to_string(entry).with_context(|| format!("cannot read {}", entry.display()))?;
    let mut out = String::with_capacity(source.len() * 4);
    for line in source.lines() {
        let import =
            line.trim().strip_prefix("@import").map(|rest| rest.trim().trim_end_matches(';').trim().trim_matches('"'));
        match import {
            Some(partial) => {
                let path = dir.join(partial);
                out.push_str(&format!("/* {partial} */\n"));
                out.push_str(&fs::read_to_string(&path).with_context(|| {
                    format!("{} imports {}, which cannot be read", entry.display(), path.display())
                })?);
                out.push('\n');
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// Writes `FILE.br` and `FILE.gz` beside `FILE`. The server sends these as they are to
/// browsers that accept them, instead of compressing the bundle on every request.
fn precompress(file: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let raw = fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut br = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut raw.as_slice(), &mut br, &params)?;
    fs::write(with_suffix(file, "br"), &br)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw)?;
    fs::write(with_suffix(file, "gz"), gz.finish()?)?;
    step(&format!("{}: {} KB, {} KB brotli", file.display(), raw.len() / 1024, br.len() / 1024));
    Ok(())
}

fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
