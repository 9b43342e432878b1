//! The API keys page, the linked sign-ins page and the sign-in page's provider buttons
//! over plain HTTP, as a browser would send their forms and follow their redirects (the
//! provider is the fake one of `oidc_provider.rs`); on both backends.
//! `browser_keys_ids.rs` drives the same pages in Chromium.

use std::collections::BTreeMap;

use crate::oidc_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider, Person};
use crate::pages::{SAME_ORIGIN, csrf_of, get_page, page_sign_in, post_form};
use crate::support::*;

/// The settings of a generic provider `name` served by `p`.
pub(crate) fn provider_settings(name: &str, p: &FakeProvider) -> Vec<(String, String)> {
    let prefix = format!("OAUTH_OIDC_{}", name.to_uppercase());
    vec![
        (format!("{prefix}_ISSUER"), p.issuer()),
        (format!("{prefix}_CLIENT_ID"), CLIENT_ID.into()),
        (format!("{prefix}_CLIENT_SECRET"), CLIENT_SECRET.into()),
    ]
}

pub(crate) fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The cookies a browser holds for the server.
#[derive(Debug, Default, Clone)]
pub(crate) struct Jar(BTreeMap<String, String>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps what an answer sets (and drops what it expires).
    fn absorb(&mut self, reply: &Reply) {
        for v in reply
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let Some((name, rest)) = v.split_once('=') else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or_default();
            if v.contains("Max-Age=0") || value.is_empty() {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_string(), value.to_string());
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn session(&self) -> Option<&str> {
        self.get("__Host-portcullis")
    }
}

/// A GET from a browser holding `jar`, which keeps what the answer sets.
pub(crate) async fn get_in(s: &TestServer, path: &str, jar: &mut Jar) -> Reply {
    let cookies = jar.header();
    let headers: Vec<(&str, &str)> = [("cookie", cookies.as_str())]
        .into_iter()
        .filter(|_| !jar.0.is_empty())
        .collect();
    let res = s.http.call_with(M::GET, path, Anonymous, Empty, &headers).await;
    jar.absorb(&res);
    res
}

/// A form posted from one of our pages by a browser holding `jar`.
pub(crate) async fn post_in(s: &TestServer, path: &str, form: &[(&str, &str)], jar: &mut Jar) -> Reply {
    let cookies = jar.header();
    let mut headers = SAME_ORIGIN.to_vec();
    headers.push(("cookie", &cookies));
    let res = s.http.call_with(M::POST, path, Anonymous, Form(form), &headers).await;
    jar.absorb(&res);
    res
}

/// Signs in with a password in the browser holding `jar`.
pub(crate) async fn sign_in_in(s: &TestServer, login: &str, jar: &mut Jar) {
    let session = page_sign_in(s, login, PASSWORD).await;
    jar.0.insert("__Host-portcullis".into(), session);
}

/// Where an answer sends the browser.
pub(crate) fn location(reply: &Reply) -> String {
    reply.header("location").unwrap_or_default().to_string()
}

/// Follows an answer that sends the browser to the provider (which signs in whoever it
/// was told to and sends the browser straight back): the callback's answer.
pub(crate) async fn via_provider(s: &TestServer, to_provider: &Reply, jar: &mut Jar) -> Reply {
    assert_eq!(to_provider.status, 303, "{}", to_provider.text);
    let res = s.http.client.get(location(to_provider)).send().await.unwrap();
    assert_eq!(res.status(), 303, "the provider sends the browser back");
    let back = res.headers()["location"].to_str().unwrap().to_string();
    let at = back.find("/auth/oauth/").expect("back to our callback");
    get_in(s, &back[at..], jar).await
}

/// The text of the element with `id` (the first tag carrying it), without markup.
pub(crate) fn text_by_id(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let start = at + html[at..].find('>').unwrap() + 1;
    let end = start + html[start..].find('<').unwrap();
    html[start..end].trim().to_string()
}

/// `/auth/verify` with `key`, asking for `permission` (none when empty).
async fn verify(s: &TestServer, key: &str, permission: &str) -> Reply {
    let path = match permission {
        "" => "/auth/verify".to_string(),
        p => format!("/auth/verify?permission={p}"),
    };
    s.call(M::GET, &path, ApiKey(key), Empty).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_page_creates_keys_from_own_permissions_and_revokes_them() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        s.user_with_role("kim", "analyst").await;
        let lee = s.user("lee").await;
        let cookie = page_sign_in(&s, "kim", PASSWORD).await;
        let page = get_page(&s, "/account/api-keys", Some(&cookie)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.text.contains("value=\"projects:read\""), "{}", page.text);
        assert!(!page.text.contains("value=\"users:manage\""), "only the person's own");
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let csrf = csrf_of(&page.text);
        let post = async |form: &[(&str, &str)]| {
            let form = [&[("csrf", csrf.as_str())], form].concat();
            post_form(&s, "/account/api-keys", &form, Some(&cookie), SAME_ORIGIN).await
        };

        // Refusals in words, and nothing created: a permission the person lacks (the
        // domain's rule, as for the API), one that does not exist, a bad name or date.
        for (form, status, says) in [
            (
                &[("name", "x"), ("permission", "users:manage")][..],
                403,
                "only carry permissions you hold",
            ),
            (&[("name", "x"), ("permission", "no:such")][..], 422, "does not exist"),
            (&[("name", " "), ("permission", "projects:read")][..], 422, "1 to 100"),
            (&[("name", "x"), ("expires", "2001-01-01")][..], 422, "in the future"),
            (&[("name", "x"), ("expires", "soon")][..], 422, "not a date"),
        ] {
            let res = post(form).await;
            assert_eq!(res.status, status, "{form:?}: {}", res.text);
            assert!(
                res.text.contains(says) && res.text.contains("role=\"alert\""),
                "{form:?}: {}",
                res.text
            );
            assert!(!res.text.contains("pcx_"), "{form:?}");
        }
        // Without the form's token, or from another site: refused.
        let form = [("name", "x"), ("permission", "projects:read")];
        assert_eq!(
            post_form(&s, "/account/api-keys", &form, Some(&cookie), SAME_ORIGIN)
                .await
                .status,
            403
        );
        let cross = [("sec-fetch-site", "cross-site")];
        let with_token = [&form[..], &[("csrf", csrf.as_str())]].concat();
        assert_eq!(
            post_form(&s, "/account/api-keys", &with_token, Some(&cookie), &cross)
                .await
                .status,
            403
        );
        assert!(
            !get_page(&s, "/account/api-keys", Some(&cookie))
                .await
                .text
                .contains("pcx_")
        );

        // Created: the key is on the answer, once, and works with what it was given.
        let res = post(&[
            ("name", "ci"),
            ("permission", "projects:read"),
            ("expires", "2999-12-31"),
        ])
        .await;
        assert_eq!(res.status, 201, "{}", res.text);
        let key = text_by_id(&res.text, "new-key");
        assert!(key.starts_with("pcx_"), "{key}");
        assert!(res.text.contains("data-copy=\"new-key\""), "the copy button");
        let ok = verify(&s, &key, "projects:read").await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.header("x-auth-permissions"), Some("projects:read"));
        assert_eq!(verify(&s, &key, "projects:create").await.status, 403);

        // Listed, never with its secret.
        let list = get_page(&s, "/account/api-keys", Some(&cookie)).await;
        let id = key[4..].split('_').next().unwrap();
        assert!(
            list.text.contains(&format!("pcx_{id}")) && list.text.contains(">ci<"),
            "{}",
            list.text
        );
        assert!(list.text.contains("2999-12-31 23:59 UTC"), "{}", list.text);
        assert!(!list.text.contains(&key), "the secret is shown only once");

        // Revoking: another's key is not found (and keeps working), a post without the
        // token changes nothing, then ours is refused at once.
        let theirs = s
            .call(
                M::POST,
                "/auth/api-keys",
                Bearer(&lee.access),
                Json(serde_json::json!({"name": "lee"})),
            )
            .await;
        let their_key = theirs.body["key"].as_str().unwrap().to_string();
        let their_id = theirs.body["id"].as_str().unwrap().to_string();
        let revoke = async |id: &str, csrf: &str| {
            let form = [("csrf", csrf), ("id", id)];
            post_form(&s, "/account/api-keys/revoke", &form, Some(&cookie), SAME_ORIGIN).await
        };
        let res = revoke(&their_id, &csrf).await;
        assert_eq!(res.status, 404, "{}", res.text);
        assert!(res.text.contains("does not exist or is already revoked"));
        assert_eq!(verify(&s, &their_key, "").await.status, 200);
        assert_eq!(revoke(id, "wrong").await.status, 403);
        assert_eq!(verify(&s, &key, "projects:read").await.status, 200);
        let res = revoke(id, &csrf).await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(location(&res), "/account/api-keys");
        assert_eq!(verify(&s, &key, "projects:read").await.status, 401);
        let list = get_page(&s, "/account/api-keys", Some(&cookie)).await;
        assert!(list.text.contains("Revoked") && !list.text.contains(&format!("id=\"revoke-{id}\"")));
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_is_served_under_its_hash_and_pages_carry_no_inline_script() {
    // A provider whose authorization endpoint is on another origin than its issuer:
    // the link form's redirect goes there, so form-action must allow it.
    let acme = FakeProvider::start(None).await;
    let elsewhere = acme.base.replace("127.0.0.1", "localhost");
    let mut settings = provider_settings("acme", &acme);
    settings.push((
        "OAUTH_OIDC_ACME_AUTHORIZATION_ENDPOINT".into(),
        format!("{elsewhere}/authorize"),
    ));
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &pairs(&settings)).await;
    let csp = s
        .get("/login")
        .await
        .header("content-security-policy")
        .unwrap()
        .to_string();
    assert!(
        csp.contains(&format!("form-action 'self' {} {elsewhere};", acme.base)),
        "{csp}"
    );
    s.register("sam").await;
    let cookie = page_sign_in(&s, "sam", PASSWORD).await;
    let page = get_page(&s, "/account/api-keys", Some(&cookie)).await;
    let at = page.text.find("<script src=\"").expect("the script") + "<script src=\"".len();
    let src = page.text[at..].split('"').next().unwrap().to_string();
    assert!(src.starts_with("/assets/app-") && src.ends_with(".js"), "{src}");
    let js = s.get(&src).await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(js.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert!(js.text.contains("navigator.clipboard"));
    assert_eq!(s.get("/assets/app-0000000000000000.js").await.status, 404);
    // Every script on every page is that file: none inline (the CSP would block it).
    for path in ["/account/api-keys", "/account/identities", "/account"] {
        let html = get_page(&s, path, Some(&cookie)).await.text;
        for piece in html.split("<script").skip(1) {
            assert!(piece.starts_with(&format!(" src=\"{src}\"")), "{path}: <script{piece}");
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_key_and_linking_ask_for_a_step_up_once_the_sign_in_is_old() {
    let acme = FakeProvider::start(None).await;
    let mut settings = provider_settings("acme", &acme);
    settings.push(("MFA_STEP_UP_MAX_AGE_SECONDS".into(), "1".into()));
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &pairs(&settings)).await;
    s.user_with_role("stu", "analyst").await;
    let mut jar = Jar::default();
    sign_in_in(&s, "stu", &mut jar).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let page = get_in(&s, "/account/api-keys", &mut jar).await;
    assert!(
        page.text.contains("id=\"reauth\" name=\"reauth\" type=\"password\""),
        "{}",
        page.text
    );
    let csrf = csrf_of(&page.text);
    let create = [("csrf", csrf.as_str()), ("name", "ci"), ("permission", "projects:read")];
    for proof in [None, Some("wrong password")] {
        let mut form = create.to_vec();
        form.extend(proof.map(|p| ("reauth", p)));
        let res = post_in(&s, "/account/api-keys", &form, &mut jar).await;
        assert_eq!(res.status, 401, "{proof:?}: {}", res.text);
        assert!(res.text.contains("That did not confirm it is you."), "{}", res.text);
        assert!(
            !res.text.contains("pcx_") && res.text.contains("value=\"ci\""),
            "the form is kept"
        );
    }
    let identities = get_in(&s, "/account/identities", &mut jar).await;
    assert!(identities.text.contains("id=\"reauth\""), "{}", identities.text);
    let res = post_in(
        &s,
        "/account/identities/link",
        &[("csrf", &csrf), ("provider", "acme")],
        &mut jar,
    )
    .await;
    assert_eq!(res.status, 401, "{}", res.text);
    assert!(jar.get("__Host-portcullis-oauth").is_none(), "no flow began");

    let mut form = create.to_vec();
    form.push(("reauth", PASSWORD));
    let res = post_in(&s, "/account/api-keys", &form, &mut jar).await;
    assert_eq!(res.status, 201, "{}", res.text);
    // Proved just now: the next sensitive form asks nothing.
    let page = get_in(&s, "/account/identities", &mut jar).await;
    assert!(!page.text.contains("id=\"reauth\""), "{}", page.text);
    s.stop().await;
}

/// Signs `person` in (or up) through the sign-in page's button for `provider`, in a
/// fresh browser: that browser.
async fn provider_sign_in(s: &TestServer, p: &FakeProvider, provider: &str, person: Person) -> (Jar, Reply) {
    p.sign_in_as(person);
    let mut jar = Jar::default();
    let start = get_in(s, &format!("/login/oauth/{provider}"), &mut jar).await;
    assert!(jar.get("__Host-portcullis-oauth").is_some(), "the flow's cookie");
    let back = via_provider(s, &start, &mut jar).await;
    assert!(jar.get("__Host-portcullis-oauth").is_none(), "the flow is over");
    (jar, back)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_buttons_sign_in_with_return_to_code_step_and_failures_in_words() {
    for backend in backends().await {
        let acme = FakeProvider::start(None).await;
        let mut settings = provider_settings("acme", &acme);
        // Nothing listens there.
        let dead = format!("http://{}", free_address());
        settings.extend([
            ("OAUTH_OIDC_DEAD_ISSUER".to_string(), dead),
            ("OAUTH_OIDC_DEAD_CLIENT_ID".to_string(), CLIENT_ID.to_string()),
        ]);
        let (s, _db) = TestServer::start_with(backend, &pairs(&settings)).await;

        // One button per provider, carrying a safe return_to.
        let login = get_page(&s, "/login?return_to=%2Faccount%2Fidentities", None).await;
        assert!(
            login
                .text
                .contains("href=\"/login/oauth/acme?return_to=%2Faccount%2Fidentities\""),
            "{}",
            login.text
        );
        assert!(login.text.contains(">Sign in with acme<"), "{}", login.text);

        // A new person: signed up and signed in, back where they were going.
        acme.sign_in_as(Person::new("ann-sub", "ann@example.com"));
        let mut jar = Jar::default();
        let start = get_in(&s, "/login/oauth/acme?return_to=%2Faccount%2Fidentities", &mut jar).await;
        assert!(location(&start).starts_with(&acme.base), "{}", location(&start));
        let back = via_provider(&s, &start, &mut jar).await;
        assert_eq!(back.status, 303, "{}", back.text);
        assert_eq!(location(&back), "/account/identities");
        let page = get_in(&s, "/account/identities", &mut jar).await;
        assert_eq!(page.status, 200);
        assert!(page.text.contains("ann@example.com") && page.text.contains("id=\"identity-acme\""));
        // The browser session is an ordinary one: the API lists it.
        let account = get_in(&s, "/account", &mut jar).await;
        assert!(account.text.contains("value=\"ann@example.com\""), "{}", account.text);

        // return_to tricks stay on our origin.
        for trick in crate::pages::RETURN_TO_TRICKS {
            acme.sign_in_as(Person::new("ann-sub", "ann@example.com"));
            let mut jar = Jar::default();
            let path = format!("/login/oauth/acme?return_to={}", crate::browser::url_encode(trick));
            let start = get_in(&s, &path, &mut jar).await;
            let back = via_provider(&s, &start, &mut jar).await;
            assert_eq!(location(&back), "/account", "{trick:?}");
        }

        // An existing password account with that e-mail is not taken over: the sign-in
        // page says so (409), and no one is signed in.
        s.register("bea").await;
        let (jar, back) = provider_sign_in(&s, &acme, "acme", Person::new("bea-sub", "bea@example.com")).await;
        assert_eq!(back.status, 409, "{}", back.text);
        assert!(
            back.text.contains("already exists here and is not linked to acme"),
            "{}",
            back.text
        );
        assert!(back.text.contains("role=\"alert\"") && back.text.contains("id=\"login\""));
        assert!(
            back.header("content-security-policy")
                .unwrap()
                .contains("default-src 'none'")
        );
        assert!(jar.session().is_none());

        // A provider that cannot be reached, one not configured: in words, 502 and 400.
        let res = get_page(&s, "/login/oauth/dead", None).await;
        assert_eq!(res.status, 502, "{}", res.text);
        assert!(res.text.contains("dead could not be reached."), "{}", res.text);
        let res = get_page(&s, "/login/oauth/nope", None).await;
        assert_eq!(res.status, 400, "{}", res.text);
        assert!(res.text.contains("Signing in with nope did not work."), "{}", res.text);

        // An account with a second factor goes through the code step, as with a password.
        let mia = s.user("mia").await;
        let mut jar = Jar::default();
        sign_in_in(&s, "mia", &mut jar).await;
        let page = get_in(&s, "/account/identities", &mut jar).await;
        acme.sign_in_as(Person::new("mia-sub", "mia.elsewhere@example.com"));
        let form = [("csrf", csrf_of(&page.text)), ("provider", "acme".into())];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let start = post_in(&s, "/account/identities/link", &form, &mut jar).await;
        let back = via_provider(&s, &start, &mut jar).await;
        assert_eq!(location(&back), "/account/identities?linked=acme", "{}", back.text);
        let (secret, _) = crate::mfa::enrol(&s, &mia.access).await;

        let (mut jar, back) =
            provider_sign_in(&s, &acme, "acme", Person::new("mia-sub", "mia.elsewhere@example.com")).await;
        assert_eq!(back.status, 303, "{}", back.text);
        assert_eq!(location(&back), "/login/code?return_to=");
        assert!(jar.session().is_none() && jar.get("__Host-portcullis-mfa").is_some());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let code = portcullis::crypto::totp::code_at(&secret, now + portcullis::crypto::totp::STEP).unwrap();
        let res = post_in(&s, "/login/code", &[("code", &code)], &mut jar).await;
        assert_eq!(res.status, 303, "{}", res.text);
        assert_eq!(location(&res), "/account");
        assert!(get_in(&s, "/account", &mut jar).await.text.contains(">mia<"));
        s.stop().await;
    }
}

/// The linked providers' names the API lists for the holder of `jar`'s account.
async fn linked_providers(s: &TestServer, login: &str) -> Vec<String> {
    let id = s.service.store().user_by_login(login).await.unwrap().unwrap().id;
    s.service
        .identities(id)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.provider)
        .collect()
}

/// Presses a button of the identities page's form: `action` (`link`, `unlink`) for
/// `provider`.
async fn identity_action(s: &TestServer, jar: &mut Jar, action: &str, provider: &str) -> Reply {
    let page = get_in(s, "/account/identities", jar).await;
    let csrf = csrf_of(&page.text);
    let form = [("csrf", csrf.as_str()), ("provider", provider)];
    post_in(s, &format!("/account/identities/{action}"), &form, jar).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_link_and_unlink_but_never_the_last_way_in_nor_anothers_identity() {
    for backend in backends().await {
        let acme = FakeProvider::start(None).await;
        let beta = FakeProvider::start(None).await;
        let mut settings = provider_settings("acme", &acme);
        settings.extend(provider_settings("beta", &beta));
        let (s, _db) = TestServer::start_with(backend, &pairs(&settings)).await;

        // An account made by a provider has no password: its one identity is its only
        // way in, and unlinking it is refused (409, in words), on the page as by the API.
        let (mut pat, back) = provider_sign_in(&s, &acme, "acme", Person::new("pat-acme", "pat@example.com")).await;
        assert_eq!(back.status, 303, "{}", back.text);
        let page = get_in(&s, "/account/identities", &mut pat).await;
        assert!(page.text.contains("id=\"unlink-acme\"") && page.text.contains("id=\"link-beta\""));
        assert!(
            !page.text.contains("id=\"link-acme\""),
            "a linked provider is not offered again"
        );
        let res = identity_action(&s, &mut pat, "unlink", "acme").await;
        assert_eq!(res.status, 409, "{}", res.text);
        assert!(res.text.contains("acme is your only way to sign in"), "{}", res.text);
        assert_eq!(linked_providers(&s, "pat").await, ["acme"]);

        // Linking another provider while signed in: off to it and back, linked to this
        // account (nobody else signed in), and then the first may go, but not the last.
        beta.sign_in_as(Person::new("pat-beta", "pat.beta@example.com"));
        let start = identity_action(&s, &mut pat, "link", "beta").await;
        assert!(location(&start).starts_with(&beta.base), "{}", start.text);
        let session = pat.session().unwrap().to_string();
        let back = via_provider(&s, &start, &mut pat).await;
        assert_eq!(back.status, 303, "{}", back.text);
        assert_eq!(location(&back), "/account/identities?linked=beta");
        assert_eq!(pat.session(), Some(session.as_str()), "the same session");
        let page = get_in(&s, "/account/identities?linked=beta", &mut pat).await;
        assert!(
            page.text.contains("beta is now linked to your account."),
            "{}",
            page.text
        );
        assert_eq!(linked_providers(&s, "pat").await, ["acme", "beta"]);
        let res = identity_action(&s, &mut pat, "unlink", "acme").await;
        assert_eq!(location(&res), "/account/identities?unlinked=acme", "{}", res.text);
        let res = identity_action(&s, &mut pat, "unlink", "beta").await;
        assert_eq!(res.status, 409, "{}", res.text);
        assert_eq!(linked_providers(&s, "pat").await, ["beta"]);
        // A notice names only a configured provider.
        let page = get_in(&s, "/account/identities?linked=%3Cb%3Eevil", &mut pat).await;
        let main = page.text.split_once("<main>").map_or("", |(_, m)| m);
        assert!(!main.contains("evil"), "{}", page.text);

        // Another account cannot take pat's beta identity: 409 in words, nothing linked.
        s.register("bob").await;
        let mut bob = Jar::default();
        sign_in_in(&s, "bob", &mut bob).await;
        beta.sign_in_as(Person::new("pat-beta", "pat.beta@example.com"));
        let start = identity_action(&s, &mut bob, "link", "beta").await;
        let back = via_provider(&s, &start, &mut bob).await;
        assert_eq!(back.status, 409, "{}", back.text);
        assert!(
            back.text.contains("already linked to another account here"),
            "{}",
            back.text
        );
        assert!(back.header("content-security-policy").is_some());
        assert!(linked_providers(&s, "bob").await.is_empty());
        assert_eq!(linked_providers(&s, "pat").await, ["beta"]);

        // A link begun by bob that comes back to a browser now signed in as carol links
        // nothing; one that comes back after signing out asks to sign in.
        s.register("carol").await;
        acme.sign_in_as(Person::new("bob-acme", "bob.acme@example.com"));
        let start = identity_action(&s, &mut bob, "link", "acme").await;
        let mut carol = bob.clone();
        let carol_session = page_sign_in(&s, "carol", PASSWORD).await;
        carol.0.insert("__Host-portcullis".into(), carol_session);
        let back = via_provider(&s, &start, &mut carol).await;
        assert_eq!(back.status, 403, "{}", back.text);
        assert!(
            back.text.contains("started while signed in as someone else"),
            "{}",
            back.text
        );
        let start = identity_action(&s, &mut bob, "link", "acme").await;
        bob.0.remove("__Host-portcullis");
        let back = via_provider(&s, &start, &mut bob).await;
        assert_eq!(back.status, 401, "{}", back.text);
        assert!(
            back.text.contains("You were signed out before acme could be linked."),
            "{}",
            back.text
        );
        assert!(
            back.text.contains("value=\"/account/identities\""),
            "back there after signing in"
        );
        assert!(linked_providers(&s, "bob").await.is_empty() && linked_providers(&s, "carol").await.is_empty());

        // Without the form's token, from another site: refused before anything happens.
        let mut carol_jar = Jar::default();
        sign_in_in(&s, "carol", &mut carol_jar).await;
        let res = post_in(&s, "/account/identities/link", &[("provider", "acme")], &mut carol_jar).await;
        assert_eq!(res.status, 403);
        assert!(carol_jar.get("__Host-portcullis-oauth").is_none());
        let page = get_in(&s, "/account/identities", &mut carol_jar).await;
        let csrf = csrf_of(&page.text);
        let cookies = carol_jar.header();
        let res = s
            .http
            .call_with(
                M::POST,
                "/account/identities/unlink",
                Anonymous,
                Form(&[("csrf", &csrf), ("provider", "acme")]),
                &[("sec-fetch-site", "cross-site"), ("cookie", &cookies)],
            )
            .await;
        assert_eq!(res.status, 403);
        s.stop().await;
    }
}

/// A provider button followed by a browser already signed in (say, a link on another
/// site) starts no flow: the browser goes where `/login` sends it, and keeps its
/// session, rather than being signed in as whoever the provider maps to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_button_leaves_a_signed_in_browser_as_it_is() {
    let acme = FakeProvider::start(None).await;
    let settings = provider_settings("acme", &acme);
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &pairs(&settings)).await;
    s.register("olga").await;
    let mut jar = Jar::default();
    sign_in_in(&s, "olga", &mut jar).await;
    let session = jar.get("__Host-portcullis").map(str::to_string);
    let res = get_in(&s, "/login/oauth/acme?return_to=%2Faccount%2Fsessions", &mut jar).await;
    assert_eq!(res.status, 303, "{}", res.text);
    assert_eq!(location(&res), "/account/sessions");
    assert!(jar.get("__Host-portcullis-oauth").is_none(), "no flow started");
    assert_eq!(jar.get("__Host-portcullis").map(str::to_string), session);
    assert_eq!(get_in(&s, "/account", &mut jar).await.status, 200);
    s.stop().await;
}

/// An account made by a provider sign-in has no password and no second factor: once
/// the step-up is due, its sensitive forms say to sign in again, and a post is refused
/// (403, nothing created) without counting towards the account's lockout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_a_password_is_told_to_sign_in_again_for_a_step_up() {
    let acme = FakeProvider::start(None).await;
    let mut settings = provider_settings("acme", &acme);
    settings.push(("MFA_STEP_UP_MAX_AGE_SECONDS".into(), "1".into()));
    let (s, _db) = TestServer::start_with(Backend::Sqlite, &pairs(&settings)).await;
    let (mut jar, back) = provider_sign_in(&s, &acme, "acme", Person::new("uma-sub", "uma@example.com")).await;
    assert_eq!(back.status, 303, "{}", back.text);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let page = get_in(&s, "/account/api-keys", &mut jar).await;
    assert!(
        page.text.contains("id=\"step-up-sign-in-again\"") && !page.text.contains("id=\"reauth\""),
        "{}",
        page.text
    );
    let csrf = csrf_of(&page.text);
    for _ in 0..7 {
        let form = [("csrf", csrf.as_str()), ("name", "ci"), ("reauth", "anything")];
        let res = post_in(&s, "/account/api-keys", &form, &mut jar).await;
        assert_eq!(res.status, 403, "never 429, nothing was checked: {}", res.text);
        assert!(res.text.contains("sign in again"), "{}", res.text);
    }
    let listed = get_in(&s, "/account/api-keys", &mut jar).await;
    assert!(!listed.text.contains("pcx_"), "no key was created: {}", listed.text);
    s.stop().await;
}
