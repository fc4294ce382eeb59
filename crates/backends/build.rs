//! Build script of the stack crate: compiles the lwIP glue (`lwip_glue.c`) against Debian's lwIP headers when they are installed, and says so to the crate with the `wirelab_lwip_glue` cfg.
//!
//! Only the headers are needed here: the library itself is never linked (each simulated host
//! loads a private copy at run time). Without the headers the crate builds all the same and the
//! lwIP backend reports itself unavailable, naming the packages to install.
//! `WIRELAB_LWIP_INCLUDE` points at another include directory (the one holding `lwipopts.h`);
//! `WIRELAB_NO_LWIP=1` builds as if lwIP were absent, to try that configuration.

use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(wirelab_lwip_glue)");
    println!("cargo:rerun-if-changed=lwip_glue.c");
    println!("cargo:rerun-if-env-changed=WIRELAB_LWIP_INCLUDE");
    println!("cargo:rerun-if-env-changed=WIRELAB_NO_LWIP");
    if std::env::var_os("WIRELAB_NO_LWIP").is_some_and(|v| v == "1") {
        return;
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let include = std::env::var_os("WIRELAB_LWIP_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include/lwip"));
    // The folder, not a file in it: a package manager installs files with the mtimes they had
    // when the package was built, long before this build, so a watched file that appears is
    // not seen as changed; the folder it creates is new.
    println!("cargo:rerun-if-changed={}", include.display());
    if !include.join("lwipopts.h").is_file() || !include.join("lwip/tcp.h").is_file() {
        println!(
            "cargo:warning=lwIP headers not found in {}: the lwip backend is built as unavailable (apt-get install liblwip-dev liblwip0)",
            include.display()
        );
        return;
    }
    cc::Build::new()
        .file("lwip_glue.c")
        .include(&include)
        .define("_GNU_SOURCE", None)
        .flag_if_supported("-std=gnu11")
        .warnings(true)
        .compile("wirelab_lwip_glue");
    // dlopen and friends live in libc from glibc 2.34 on; older ones need libdl.
    println!("cargo:rustc-link-lib=dl");
    println!("cargo:rustc-cfg=wirelab_lwip_glue");
}
