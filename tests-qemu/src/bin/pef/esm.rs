//! `pef esm`: an ESM blob sealed to a wrapping key, attached to the secure VM's initrd.

use std::process::ExitCode;

use xtask::cli::{self, EsmArgs};

use crate::{read_file, stop_code, Stop};

pub(crate) fn cmd_esm(a: EsmArgs) -> ExitCode {
    if let Err(e) = cli::check_esm_inputs(&a) {
        return stop_code(e.into());
    }
    let build = || -> Result<(usize, usize), String> {
        let mut pems = Vec::new();
        for p in &a.pubkey {
            let bytes = read_file("--pubkey", p)?;
            let pem = String::from_utf8(bytes)
                .map_err(|_| format!("--pubkey {}: not a text (PEM) file", p.display()))?;
            xtask::esm::parse_public_key_pem(&pem)
                .map_err(|e| format!("--pubkey {}: {e}", p.display()))?;
            pems.push(pem);
        }
        let pems: Vec<&str> = pems.iter().map(String::as_str).collect();
        let kernel = read_file("--kernel", &a.kernel)?;
        let initrd = match &a.initrd {
            Some(p) => read_file("--initrd", p)?,
            None => Vec::new(),
        };
        let mut files = Vec::new();
        for (name, p) in &a.attach {
            files.push((name.clone(), read_file(&format!("--attach {name}="), p)?));
        }
        let (blob, _key) = xtask::esm::build_esm_blob(
            &pems,
            &kernel,
            &initrd,
            &a.bootargs,
            &pefbox::uv::esm::DEFAULT_RTAS,
            &files,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| format!("building the blob: {e}"))?;
        let out = xtask::esm::attach_to_initrd(&blob, &initrd);
        std::fs::write(&a.out, &out).map_err(|e| format!("--out {}: {e}", a.out.display()))?;
        if let Some(p) = &a.blob_out {
            std::fs::write(p, &blob).map_err(|e| format!("--blob-out {}: {e}", p.display()))?;
        }
        Ok((blob.len(), out.len()))
    };
    match build() {
        Ok((blob, out)) => {
            eprintln!(
                "pef: ESM blob {blob} bytes; {} written ({out} bytes: ESM cpio + initrd)",
                a.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => stop_code(Stop::Usage(format!("esm: {e}"))),
    }
}
