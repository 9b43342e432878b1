//! `portcullis audit`: read, export and verify the audit trail in the configured
//! database.

use crate::Portcullis;
use crate::domain::audit::{escape_for_terminal, write_terminal_safe_json};
use crate::store::{AuditFilter, AuditRow};
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::admin::{CliError, CliResult};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print the latest records (oldest of them first); --follow keeps printing new ones.
    ///
    /// --json: one JSON object per line (NDJSON), one line per record, each the
    /// record as `audit export` writes it; with --follow, more lines as records arrive.
    Tail {
        /// Keep running and print new records as they are written (stop with Ctrl-C).
        #[arg(long)]
        follow: bool,
        /// Only these actions (comma-separated or repeated).
        #[arg(long = "action", value_delimiter = ',')]
        actions: Vec<String>,
        /// How many of the latest records to print first (1-1000).
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Write records in a time range as NDJSON to standard output.
    ///
    /// Always NDJSON, with or without --json: one JSON object per line, one line per
    /// record, oldest first.
    Export {
        /// RFC 3339, inclusive (e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// RFC 3339, exclusive.
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// Only these actions (comma-separated or repeated).
        #[arg(long = "action", value_delimiter = ',')]
        actions: Vec<String>,
    },
    /// Check every chain against its anchor and the registry, and every record's keyed
    /// link; report the first check that fails (exit code 5).
    ///
    /// --json: {"chains", "records", "broken": null or {"check", "chain", "seq", "reason"}}.
    Verify,
}

/// One record on standard output; nothing a record holds reaches the terminal raw
/// (controls and bidirectional overrides are escaped, see `escape_for_terminal`).
fn print_row(row: &AuditRow, json: bool) {
    if json {
        let mut line = Vec::new();
        if write_terminal_safe_json(&mut line, row).is_ok() {
            println!("{}", String::from_utf8_lossy(&line));
        }
        return;
    }
    let f = &row.fields;
    let resource = match (&f.resource_type, &f.resource_id) {
        (Some(t), Some(id)) => format!("{t}/{id}"),
        _ => "-".into(),
    };
    println!(
        "{}  {:<24} {:<16} {:<40} {} {}",
        f.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        escape_for_terminal(&f.action),
        escape_for_terminal(f.username.as_deref().unwrap_or("-")),
        escape_for_terminal(&resource),
        f.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        escape_for_terminal(f.ip.as_deref().unwrap_or("-")),
    );
}

pub async fn audit(cmd: AuditCommand, service: Portcullis, json: bool) -> CliResult {
    match cmd {
        AuditCommand::Tail { follow, actions, limit } => {
            let mut filter = AuditFilter {
                actions,
                ..AuditFilter::default()
            };
            let mut latest = service.audit_log(&filter, limit.clamp(1, 1000), 0).await?;
            latest.reverse();
            for row in &latest {
                print_row(row, json);
            }
            filter.after_id = latest.last().map(|r| r.id).or(Some(0));
            if follow {
                let mut filter = service.resolve_audit_filter(&filter).await?;
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    for row in service.audit_log_forward(&filter, 1000).await? {
                        print_row(&row, json);
                        filter.after(row.id);
                    }
                }
            }
        }
        AuditCommand::Export { since, until, actions } => {
            let filter = AuditFilter {
                actions,
                since,
                until,
                ..AuditFilter::default()
            };
            let mut filter = service.resolve_audit_filter(&filter).await?;
            loop {
                let rows = service.audit_log_forward(&filter, 1000).await?;
                let Some(last) = rows.last() else { break };
                filter.after(last.id);
                for row in &rows {
                    print_row(row, true);
                }
            }
        }
        AuditCommand::Verify => {
            let report = service.verify_audit().await?;
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            }
            match report.broken {
                None => {
                    if !json {
                        println!(
                            "audit trail intact: {} records in {} chains",
                            report.records, report.chains
                        );
                    }
                }
                Some(b) => {
                    return Err(CliError {
                        code: 5,
                        message: if b.chain.is_empty() {
                            format!("audit trail check failed ({}): {}", b.check.name(), b.reason)
                        } else {
                            format!(
                                "audit chain {} is broken at record {} ({}): {}",
                                escape_for_terminal(&b.chain),
                                b.seq,
                                b.check.name(),
                                b.reason
                            )
                        },
                    });
                }
            }
        }
    }
    Ok(())
}
