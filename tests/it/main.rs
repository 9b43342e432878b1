//! Integration tests: the real server over real HTTP on an ephemeral port, against a
//! real SQLite file and a real PostgreSQL database (a fresh one per server).
//! One test binary, so the crate links once.

mod abuse;
mod accounts;
mod audit;
mod browser;
mod browser_account;
mod browser_axebench;
mod browser_chrome;
mod browser_keys_ids;
mod browser_oidc;
mod browser_two_factor;
mod cli;
mod cli_enrol;
mod compat;
mod compat_python;
mod connections;
mod credentials;
mod doc_links;
mod docs;
mod docs_live;
mod gateways;
mod hostile_tokens;
mod mfa;
mod oauth;
mod oauth_node;
mod oidc_code_flow;
mod oidc_provider;
mod pages;
mod pages_account;
mod pages_chrome;
mod pages_keys_ids;
mod pages_two_factor;
mod privilege;
mod rbac;
mod service;
mod sessions;
mod settings;
mod support;
mod tokens;
