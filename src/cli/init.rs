//! `cryptolake init DIR`: a new project directory with the embedded default.

use std::path::PathBuf;

use super::output::{Format, print_rows, row};
use super::{CONFIG_FILE, CliError, Config};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The project directory (created if missing).
    pub dir: PathBuf,
    /// Overwrite an existing cryptolake.toml.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &InitArgs, format: Format) -> Result<(), CliError> {
    let file = args.dir.join(CONFIG_FILE);
    if file.exists() && !args.force {
        return Err(CliError::Config(format!(
            "{} exists; use --force to overwrite it",
            file.display()
        )));
    }
    std::fs::create_dir_all(&args.dir)?;
    std::fs::write(&file, Config::init_text())?;
    let config = Config::load(Some(&file))?;
    for dir in [
        &config.landing.path,
        &PathBuf::from(&config.catalog.warehouse),
    ] {
        std::fs::create_dir_all(dir)?;
    }
    let rows = vec![row([
        ("config", file.display().to_string().into()),
        ("catalog", config.catalog.path.display().to_string().into()),
        ("warehouse", config.catalog.warehouse.clone().into()),
        ("landing", config.landing.path.display().to_string().into()),
    ])];
    print_rows(
        &rows,
        &["config", "catalog", "warehouse", "landing"],
        format,
    );
    Ok(())
}
