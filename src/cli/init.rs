//! `cryptolake init DIR`: a new project directory, on the embedded default or on Glue and S3.

use std::path::PathBuf;

use cryptolake_catalog::CatalogConfig;
use cryptolake_catalog::config::CatalogKind;
use cryptolake_jobs::job::landing::Landing;

use super::output::{Format, print_rows, row};
use super::{CONFIG_FILE, CliError, Config};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The project directory (created if missing).
    pub dir: PathBuf,
    /// Overwrite an existing cryptolake.toml.
    #[arg(long)]
    pub force: bool,
    /// The catalog: `sqlite` (embedded, local warehouse) or `glue` (AWS Glue Data Catalog,
    /// with `--warehouse s3://BUCKET/PREFIX`; region and credentials from the AWS chain).
    #[arg(long, value_parser = ["sqlite", "glue"], default_value = "sqlite")]
    pub catalog: String,
    /// An endpoint serving Glue and S3 instead of AWS (a local emulator such as moto).
    #[arg(long)]
    pub endpoint: Option<String>,
}

/// `warehouse` and `landing` are the global `--warehouse` and `--landing` flags (or
/// `CRYPTOLAKE_WAREHOUSE`, `CRYPTOLAKE_LANDING`); a relative local landing is kept relative
/// to the new file.
pub fn run(
    args: &InitArgs,
    warehouse: Option<&str>,
    landing: Option<&str>,
    format: Format,
) -> Result<(), CliError> {
    let file = args.dir.join(CONFIG_FILE);
    if file.exists() && !args.force {
        return Err(CliError::Config(format!(
            "{} exists; use --force to overwrite it",
            file.display()
        )));
    }
    let catalog = catalog_config(args, warehouse)?;
    std::fs::create_dir_all(&args.dir)?;
    std::fs::write(&file, Config::init_text(catalog, landing))?;
    let config = Config::load(Some(&file))?;
    if let Landing::Local(dir) = config.landing()? {
        std::fs::create_dir_all(dir)?;
    }
    if config.catalog.kind == CatalogKind::Sqlite {
        std::fs::create_dir_all(&config.catalog.warehouse)?;
    }
    let catalog = match config.catalog.kind {
        CatalogKind::Sqlite => config.catalog.path.display().to_string(),
        CatalogKind::Glue => format!(
            "glue ({})",
            config.catalog.endpoint.as_deref().unwrap_or("AWS")
        ),
    };
    let rows = vec![row([
        ("config", file.display().to_string().into()),
        ("catalog", catalog.into()),
        ("warehouse", config.catalog.warehouse.clone().into()),
        ("landing", config.landing.path.clone().into()),
    ])];
    print_rows(
        &rows,
        &["config", "catalog", "warehouse", "landing"],
        format,
    );
    Ok(())
}

/// The `[catalog]` section `init` writes, checked before anything is written.
fn catalog_config(args: &InitArgs, warehouse: Option<&str>) -> Result<CatalogConfig, CliError> {
    let mut catalog = CatalogConfig::default();
    if let Some(w) = warehouse {
        catalog.warehouse = w.to_string();
    }
    catalog.endpoint = args.endpoint.clone();
    if args.catalog == "glue" {
        catalog.kind = CatalogKind::Glue;
        if warehouse.is_none() {
            return Err(CliError::Config(
                "--catalog glue needs --warehouse s3://BUCKET/PREFIX".into(),
            ));
        }
    }
    catalog.validate()?;
    Ok(catalog)
}
