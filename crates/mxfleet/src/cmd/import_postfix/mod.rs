//! `mxfleet import-postfix main.cf [relay_recipients]`: turns a Postfix backup-MX
//! configuration into an mxfleet node config, and lists everything it could not carry
//! over, each with its Postfix parameter and why.
//!
//! The config goes to stdout (or `--out FILE`), with the not-carried list as `#`
//! comments at its top; the list also goes to stderr. Files named by `main.cf` (the
//! text sources of `hash:` tables, such as `/etc/postfix/relay_recipients` for
//! `hash:/etc/postfix/relay_recipients`) are read when they exist; the second argument
//! and `--transport` name the sources of `relay_recipient_maps` and `transport_maps`
//! when they live elsewhere.
//!
//! Exit codes: 0 ok, also with items not carried over; 64 when an input cannot be read
//! or the result would not validate (a bug: the importer drops whatever the loader
//! refuses, and reports it).
//!
//! Layout: this file is the shell (arguments, reading files, printing). The sans-IO
//! core:
//! - `main_cf`: the `main.cf` parser, `$name` expansion, times and counts.
//! - `maps`: table references, their text sources, recipients and transport entries.
//! - `restrictions`: SMTP restrictions and postscreen as spam checks.
//! - `convert`: the conversion; `smtp` its `[smtp]` table, `delivery` its `[delivery]`
//!   table, `domains` its `[[relay_domains]]` tables, `relay_behaviour` the Postfix
//!   relay behaviours mxfleet does not have.
//! - `leftovers`: why an unused parameter has no place in mxfleet.
//! - `document`: the commented TOML, made valid by the real config loader.
//! - `conversion_tests`: table-driven tests of whole conversions.

#[cfg(test)]
mod conversion_tests;
mod convert;
mod delivery;
mod document;
mod domains;
mod leftovers;
mod main_cf;
mod maps;
mod relay_behaviour;
mod restrictions;
mod smtp;

use std::path::{Path, PathBuf};

use clap::Args;

use super::EXIT_CONFIG;
use convert::{FileText, Files, ImportOptions};
use main_cf::MainCf;

#[derive(Args)]
pub struct ImportPostfixArgs {
    /// Postfix's main.cf.
    main_cf: PathBuf,
    /// The text source of relay_recipient_maps (`user@domain OK` / `@domain OK` lines);
    /// default: the file its hash: table was built from, if readable.
    relay_recipients: Option<PathBuf>,
    /// The text source of transport_maps (`example.org smtp:[mail.example.org]:25`);
    /// default: the file its hash: table was built from, if readable.
    #[arg(long, value_name = "FILE")]
    transport: Option<PathBuf>,
    /// Write the config here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write each relay domain's recipients to DIR/<domain> and name that file in the
    /// config (recipient_file) instead of listing them inline.
    #[arg(long, value_name = "DIR")]
    recipients_dir: Option<PathBuf>,
}

pub fn run(args: ImportPostfixArgs) -> u8 {
    let text = match std::fs::read_to_string(&args.main_cf) {
        Ok(text) => text,
        Err(why) => {
            eprintln!("mxfleet import-postfix: {}: {why}", args.main_cf.display());
            return EXIT_CONFIG;
        }
    };
    let cf = MainCf::parse(&text);
    let options = ImportOptions {
        relay_recipients: args.relay_recipients,
        transport: args.transport,
        recipients_dir: args.recipients_dir,
    };
    let files: Files = convert::files_to_read(&cf, &options)
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .map_or_else(|why| FileText::Unreadable(why.to_string()), FileText::Text);
            (path, text)
        })
        .collect();
    // A file named on the command line must be there; one named by main.cf may live on
    // another machine, and is reported instead.
    for given in [&options.relay_recipients, &options.transport]
        .into_iter()
        .flatten()
    {
        if let Some(FileText::Unreadable(why)) = files.get(given) {
            eprintln!("mxfleet import-postfix: {}: {why}", given.display());
            return EXIT_CONFIG;
        }
    }
    let imported = match convert::import(&cf, &files, &options) {
        Ok(imported) => imported,
        Err(errors) => {
            eprintln!(
                "mxfleet import-postfix: the imported config does not validate (a bug in \
                 the importer):\n{errors}"
            );
            return EXIT_CONFIG;
        }
    };
    for (path, contents) in &imported.recipient_files {
        if let Err(why) = write_file(path, contents) {
            eprintln!("mxfleet import-postfix: {}: {why}", path.display());
            return EXIT_CONFIG;
        }
    }
    match &args.out {
        Some(path) => {
            if let Err(why) = write_file(path, &imported.toml) {
                eprintln!("mxfleet import-postfix: {}: {why}", path.display());
                return EXIT_CONFIG;
            }
        }
        None => print!("{}", imported.toml),
    }
    if !imported.not_carried.is_empty() {
        eprintln!("Not carried over ({}):", imported.not_carried.len());
        for item in &imported.not_carried {
            eprintln!("  {}: {}", item.parameter, item.reason);
        }
    }
    0
}

fn write_file(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents)
}
