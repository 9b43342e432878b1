//! The two-factor pages in real headless Chromium: enrolment with a code computed from
//! the key the page shows (the QR code an image under the strict CSP), the recovery
//! codes shown once and downloaded as a text file, signing in with a recovery code,
//! and the sign-in of an account that must enrol first. Screenshots of every step at
//! 375 and 1280 px go to `target/ui-screenshots/`.

use std::sync::Mutex;
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::browser::{SetDownloadBehaviorBehavior, SetDownloadBehaviorParams};
use chromiumoxide::cdp::browser_protocol::target::GetTargetInfoParams;
use portcullis::crypto::totp;

use crate::browser::{
    WAIT, browser, click_and_wait, fresh_page, goto, only_our_origin, origin, screenshot_for_docs, screenshots,
    sign_in_form, submit, text_of, url_of,
};
use crate::pages_two_factor::now;
use crate::support::*;

/// Every URL the page requested was ours, but for the QR code's own `data:` image.
fn only_ours_and_data(s: &TestServer, requests: &Mutex<Vec<String>>) {
    let ours: Vec<String> = requests
        .lock()
        .unwrap()
        .iter()
        .filter(|u| !u.starts_with("data:image/png;base64,"))
        .cloned()
        .collect();
    only_our_origin(s, &Mutex::new(ours));
}

/// A string a script reads from the page.
async fn eval(page: &Page, script: &str) -> String {
    page.evaluate(script).await.unwrap().into_value::<String>().unwrap()
}

/// Whether the QR code image loaded (a `data:` URL the CSP must allow).
async fn qr_shown(page: &Page) -> bool {
    page.evaluate("(q => !!q && q.complete && q.naturalWidth > 0)(document.getElementById('qr'))")
        .await
        .unwrap()
        .into_value::<bool>()
        .unwrap()
}

/// The key the page shows, decoded.
async fn secret_shown(page: &Page) -> Vec<u8> {
    totp::from_base32(&eval(page, "document.getElementById('secret').textContent").await).unwrap()
}

/// The recovery codes the page lists.
async fn codes_shown(page: &Page) -> Vec<String> {
    let joined = eval(
        page,
        "Array.from(document.querySelectorAll('#recovery-codes code')).map(c => c.textContent).join(' ')",
    )
    .await;
    joined.split(' ').map(str::to_string).collect()
}

/// Clicks the download link and waits for the file in `dir`; its text.
async fn download(page: &Page, dir: &std::path::Path) -> String {
    let target = page.execute(GetTargetInfoParams::default()).await.unwrap();
    let context = target.result.target_info.browser_context_id.clone();
    let mut params = SetDownloadBehaviorParams::new(SetDownloadBehaviorBehavior::Allow);
    params.browser_context_id = context;
    params.download_path = Some(dir.display().to_string());
    browser().unwrap().execute(params).await.unwrap();
    let before = url_of(page).await;
    page.find_element("#download").await.unwrap().click().await.unwrap();
    let file = dir.join("portcullis-recovery-codes.txt");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !file.exists() {
        assert!(tokio::time::Instant::now() < deadline, "no download within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(url_of(page).await, before, "the download leaves the page as it is");
    std::fs::read_to_string(file).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_download_the_codes_and_sign_in_with_one_in_chromium() {
    for backend in backends().await {
        let Some((page, requests)) = fresh_page().await else {
            return;
        };
        let (s, _db) = TestServer::start(backend).await;
        s.register("dora").await;
        let base = origin(&s);
        let shot = |name: &str| format!("two-factor-{name}-{backend:?}");

        goto(&page, &format!("{base}/login?return_to=%2Faccount%2Ftwo-factor")).await;
        sign_in_form(&page, "dora", PASSWORD).await;
        assert_eq!(url_of(&page).await, format!("{base}/account/two-factor"));
        assert!(text_of(&page).await.contains(">Off<"));
        screenshots(&page, &shot("off")).await;

        // Start with the password: the QR code (an image) and the key.
        submit(&page, &[("#password", PASSWORD)]).await;
        assert_eq!(url_of(&page).await, format!("{base}/account/two-factor/enrol"));
        assert!(qr_shown(&page).await, "{}", text_of(&page).await);
        let secret = secret_shown(&page).await;
        screenshots(&page, &shot("setup")).await;
        if backend == Backend::Sqlite {
            screenshot_for_docs(&page, "two-factor-setup").await;
        }

        // A wrong code, then the right one.
        let code = totp::code_at(&secret, now()).unwrap();
        let bad = if code == "000000" { "111111" } else { "000000" };
        submit(&page, &[("#code", bad)]).await;
        assert!(text_of(&page).await.contains("That code is not valid."));
        assert!(!qr_shown(&page).await, "the key is shown once only");
        screenshots(&page, &shot("setup-failed")).await;
        submit(&page, &[("#code", &code)]).await;
        let codes = codes_shown(&page).await;
        assert_eq!(codes.len(), 10, "{}", text_of(&page).await);
        screenshots(&page, &shot("codes")).await;

        // The download: a text file with every code, fetched from nowhere.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/ui-downloads")
            .join(format!("{backend:?}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = download(&page, &dir).await;
        for c in &codes {
            assert!(file.contains(c.as_str()), "{c} in {file}");
        }

        // On; the codes are not shown again.
        click_and_wait(&page, "#continue").await;
        assert_eq!(url_of(&page).await, format!("{base}/account/two-factor"));
        let html = text_of(&page).await;
        assert!(html.contains(">On<") && !html.contains(codes[0].as_str()), "{html}");
        screenshots(&page, &shot("on")).await;

        // Signed out, back in with a recovery code.
        goto(&page, &format!("{base}/account")).await;
        click_and_wait(&page, "#sign-out").await;
        sign_in_form(&page, "dora", PASSWORD).await;
        assert!(url_of(&page).await.starts_with(&format!("{base}/login/code")));
        submit(&page, &[("#code", &codes[3])]).await;
        assert_eq!(
            url_of(&page).await,
            format!("{base}/account"),
            "{}",
            text_of(&page).await
        );
        goto(&page, &format!("{base}/account/two-factor")).await;
        assert!(text_of(&page).await.contains(">9<"));
        only_ours_and_data(&s, &requests);
        page.close().await.unwrap();
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_that_must_enrol_does_so_at_sign_in_in_chromium() {
    let Some((page, requests)) = fresh_page().await else {
        return;
    };
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &[("MFA_REQUIRED_ROLES", "admin")]).await;
    let base = origin(&s);
    goto(&page, &format!("{base}/login")).await;
    sign_in_form(&page, "admin", ADMIN_PASSWORD).await;
    assert_eq!(url_of(&page).await, format!("{base}/login/enrol?return_to="));
    assert!(qr_shown(&page).await);
    let secret = secret_shown(&page).await;
    screenshots(&page, "two-factor-must-enrol").await;
    submit(&page, &[("#code", &totp::code_at(&secret, now()).unwrap())]).await;
    assert_eq!(codes_shown(&page).await.len(), 10, "{}", text_of(&page).await);
    screenshots(&page, "two-factor-must-enrol-codes").await;
    click_and_wait(&page, "#continue").await;
    assert_eq!(url_of(&page).await, format!("{base}/account"));
    assert!(text_of(&page).await.contains(">admin<"));
    only_ours_and_data(&s, &requests);
    page.close().await.unwrap();
    s.stop().await;
}
