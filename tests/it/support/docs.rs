//! The documentation's examples, for the tests that run them: a fenced code block
//! marked `<!-- doc-test: NAME -->` on the line before it, found in README.md or any
//! `docs/**/*.md`, so that moving text between those files never breaks a test.

use std::path::{Path, PathBuf};

/// The files named `*.{ext}` below `dir` (none where it does not exist).
fn files_under(dir: PathBuf, ext: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                files.push(path);
            }
        }
    }
    files
}

/// The Markdown files that may hold a marked example: README.md and `docs/**/*.md`.
fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    files.extend(files_under(root.join("docs"), "md"));
    files
}

/// Every block marked `<!-- doc-test: NAME -->` in `text`, as (name, body).
fn marked_blocks(text: &str, file: &Path) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- doc-test:")
            .and_then(|rest| rest.strip_suffix("-->"))
            .map(str::trim)
        else {
            continue;
        };
        let where_ = format!("{}:{}: doc-test {name}", file.display(), i + 1);
        let open = lines.get(i + 1).map(|l| l.trim_end()).unwrap_or_default();
        let fence_len = open.len() - open.trim_start_matches('`').len();
        assert!(
            fence_len >= 3,
            "{where_}: the marker must be on the line just before a ``` fenced block"
        );
        let fence = &open[..fence_len];
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| l.trim_end() != fence)
            .copied()
            .collect();
        assert!(
            i + 2 + body.len() < lines.len(),
            "{where_}: the fenced block is never closed"
        );
        found.push((name.to_string(), body.join("\n")));
    }
    found
}

/// The code block marked `<!-- doc-test: {name} -->` in README.md or `docs/**/*.md`:
/// exactly one, or the test fails saying where it looked.
pub fn doc_block(name: &str) -> String {
    let files = doc_files();
    let mut matches = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (found, body) in marked_blocks(&text, file) {
            if found == name {
                matches.push((file.clone(), body));
            }
        }
    }
    match matches.len() {
        1 => matches.remove(0).1,
        0 => panic!("no <!-- doc-test: {name} --> block in any of {files:?}"),
        _ => panic!(
            "<!-- doc-test: {name} --> marks {} blocks: {:?}",
            matches.len(),
            matches.iter().map(|(f, _)| f).collect::<Vec<_>>()
        ),
    }
}

/// A program on PATH or in /usr/sbin, for tests that run an example with it; None (and
/// the test skipped, saying why) where it is missing outside CI, a failure under CI.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("PORTCULLIS_TEST_REQUIRE_POSTGRES").is_none() && std::env::var_os("CI").is_none(),
            "{name} is required (.ci/run installs it)"
        );
        eprintln!("{name} not installed: skipping");
    }
    found
}

/// Every marked block is asked for by some test (a `doc_block("NAME")` in tests/it), so
/// a marker never promises a test that does not exist.
#[test]
fn every_marked_block_has_a_test() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let sources: Vec<String> = files_under(tests, "rs")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(!sources.is_empty());
    let mut marked = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        marked.extend(marked_blocks(&text, &file).into_iter().map(|(name, _)| name));
    }
    assert!(!marked.is_empty());
    for name in marked {
        let asked = format!("doc_block(\"{name}\")");
        assert!(
            sources.iter().any(|s| s.contains(&asked)),
            "<!-- doc-test: {name} --> marks a block no test reads"
        );
    }
}

#[test]
fn a_marked_block_is_found_with_its_body_and_a_stray_marker_fails() {
    let text = "intro\n<!-- doc-test: one -->\n```sh\necho 1\n\necho 2\n```\n<!-- doc-test: two -->\n````toml\na = 1\n```\nb = 2\n````\n";
    let blocks = marked_blocks(text, Path::new("x.md"));
    assert_eq!(
        blocks,
        vec![
            ("one".to_string(), "echo 1\n\necho 2".to_string()),
            ("two".to_string(), "a = 1\n```\nb = 2".to_string())
        ]
    );
    let stray = std::panic::catch_unwind(|| marked_blocks("<!-- doc-test: x -->\nprose\n", Path::new("x.md")));
    assert!(stray.is_err(), "a marker not followed by a block must fail");
    let open =
        std::panic::catch_unwind(|| marked_blocks("<!-- doc-test: x -->\n```\nnever closed\n", Path::new("x.md")));
    assert!(open.is_err(), "an unclosed block must fail");
}
