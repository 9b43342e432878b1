//! The privilege rule, on both backends: no one grants what they do not hold, and no
//! one changes an account that outranks their own. Every admin route that changes a
//! user, role or permission (taken from the route table) is tried by each lesser
//! holder: a holder of `users:manage` only, of `roles:manage` only, and an
//! administrator acting on a superuser. Each try is a 403 that changes nothing; the
//! allowed forms of the same routes still work.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::*;

const NEW_PASSWORD: &str = "an entirely new passphrase 42";

/// The accounts of one test: who acts and on whom.
struct World {
    /// The bootstrap superuser.
    root: Tokens,
    /// `users:manage` and `users:read` only (role usermgr).
    um: Tokens,
    /// `roles:manage` and `users:read` only (role rolemgr).
    rm: Tokens,
    /// An administrator (the admin role), not a superuser.
    adm: Tokens,
    /// Another administrator.
    adm2: Uuid,
    /// A superuser (also holding the admin role).
    su: Uuid,
    /// A plain user with the viewer role.
    victim: Uuid,
    /// Every account, for the snapshot.
    all: Vec<Uuid>,
}

async fn ok(res: Reply, status: u16, what: &str) -> Value {
    assert_eq!(res.status, status, "{what}: {}", res.text);
    res.body
}

async fn create_user(s: &TestServer, by: &str, name: &str, roles: &[&str], superuser: bool) -> Uuid {
    let body = ok(
        s.call(
            M::POST,
            "/admin/users",
            Bearer(by),
            Json(json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD, "roles": roles, "is_superuser": superuser})),
        )
        .await,
        201,
        name,
    )
    .await;
    Uuid::parse_str(body["user_id"].as_str().unwrap()).unwrap()
}

async fn create_role(s: &TestServer, by: &str, name: &str, permissions: &[&str]) {
    ok(
        s.call(
            M::POST,
            "/admin/roles",
            Bearer(by),
            Json(json!({"name": name, "permissions": permissions})),
        )
        .await,
        201,
        name,
    )
    .await;
}

async fn world(s: &TestServer) -> World {
    let root = s.login_as("admin", ADMIN_PASSWORD).await;
    let a = root.access.as_str();
    create_role(s, a, "usermgr", &["users:manage", "users:read"]).await;
    create_role(s, a, "rolemgr", &["roles:manage", "users:read"]).await;
    create_role(s, a, "helpdesk", &["users:read"]).await;
    let um = create_user(s, a, "umgr", &["usermgr"], false).await;
    let rm = create_user(s, a, "rmgr", &["rolemgr"], false).await;
    let adm = create_user(s, a, "adm", &["admin"], false).await;
    let adm2 = create_user(s, a, "adm2", &["admin"], false).await;
    let su = create_user(s, a, "super", &["admin"], true).await;
    let victim = create_user(s, a, "victim", &["viewer"], false).await;
    let root_id = root.user_id();
    World {
        um: s.login_as("umgr", PASSWORD).await,
        rm: s.login_as("rmgr", PASSWORD).await,
        adm: s.login_as("adm", PASSWORD).await,
        root,
        adm2,
        su,
        victim,
        all: vec![root_id, um, rm, adm, adm2, su, victim],
    }
}

/// Everything a refused request could have changed: the accounts with their roles,
/// permissions and sessions, the number of users, every role and permission.
async fn snapshot(s: &TestServer, w: &World) -> Value {
    let a = w.root.access.as_str();
    let mut users = Vec::new();
    for id in &w.all {
        let detail = s.get_auth(&format!("/admin/users/{id}"), a).await.json();
        let sessions = s.get_auth(&format!("/admin/users/{id}/sessions"), a).await.json();
        users.push(json!({"detail": detail, "sessions": sessions.as_array().unwrap().len()}));
    }
    json!({
        "users": users,
        "total": s.get_auth("/admin/users?limit=1", a).await.json()["total"],
        "roles": s.get_auth("/admin/roles", a).await.json(),
        "permissions": s.get_auth("/admin/permissions", a).await.json(),
    })
}

/// One refused try: who, the concrete path, the body.
type Try<'a> = (&'a str, &'static str, String, Value);

/// The escalations each lesser holder tries on one route (method, declared path).
/// A mutating admin route not listed here fails the test: classify it.
fn tries<'a>(w: &'a World, method: &M, path: &str) -> Vec<Try<'a>> {
    let (um, rm, adm) = (w.um.access.as_str(), w.rm.access.as_str(), w.adm.access.as_str());
    let (um_id, adm2, su, victim) = (w.um.user_id(), w.adm2, w.su, w.victim);
    let user = |id: Uuid, rest: &str| format!("/admin/users/{id}{rest}");
    let none = json!({});
    match (method.as_str(), path) {
        ("POST", "/admin/users") => {
            let new = |extra: Value| {
                let mut body = json!({"username": "sneak", "email": "sneak@example.com", "password": PASSWORD});
                body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                body
            };
            vec![
                (
                    um,
                    "users:manage makes no analyst",
                    "/admin/users".into(),
                    new(json!({"roles": ["analyst"]})),
                ),
                (
                    um,
                    "users:manage makes no admin",
                    "/admin/users".into(),
                    new(json!({"roles": ["admin"]})),
                ),
                (
                    um,
                    "users:manage makes no superuser",
                    "/admin/users".into(),
                    new(json!({"is_superuser": true})),
                ),
                (
                    rm,
                    "roles:manage creates no user",
                    "/admin/users".into(),
                    new(json!({})),
                ),
                (
                    adm,
                    "an admin makes no superuser",
                    "/admin/users".into(),
                    new(json!({"is_superuser": true})),
                ),
            ]
        }
        ("PATCH", "/admin/users/{id}") => {
            let email = json!({"email": "taken-over@example.com"});
            vec![
                (
                    um,
                    "users:manage changes no admin's email",
                    user(adm2, ""),
                    email.clone(),
                ),
                (
                    um,
                    "users:manage makes no superuser",
                    user(victim, ""),
                    json!({"is_superuser": true}),
                ),
                (
                    um,
                    "users:manage makes itself no superuser",
                    user(um_id, ""),
                    json!({"is_superuser": true}),
                ),
                (rm, "roles:manage changes no user", user(victim, ""), email.clone()),
                (adm, "an admin changes no superuser's email", user(su, ""), email),
                (
                    adm,
                    "an admin demotes no superuser",
                    user(su, ""),
                    json!({"is_superuser": false}),
                ),
            ]
        }
        ("POST", "/admin/users/{id}/roles") => vec![
            (
                um,
                "users:manage gives no admin role",
                user(victim, "/roles"),
                json!({"role": "admin"}),
            ),
            (
                um,
                "users:manage gives no role beyond it",
                user(victim, "/roles"),
                json!({"role": "analyst"}),
            ),
            (
                um,
                "users:manage gives itself no admin role",
                user(um_id, "/roles"),
                json!({"role": "admin"}),
            ),
            (
                um,
                "users:manage gives an admin nothing",
                user(adm2, "/roles"),
                json!({"role": "helpdesk"}),
            ),
            (
                rm,
                "roles:manage assigns nothing",
                user(victim, "/roles"),
                json!({"role": "helpdesk"}),
            ),
            (
                adm,
                "an admin gives a superuser nothing",
                user(su, "/roles"),
                json!({"role": "helpdesk"}),
            ),
        ],
        ("DELETE", "/admin/users/{id}/roles/{role}") => vec![
            (
                um,
                "users:manage demotes no admin",
                user(adm2, "/roles/admin"),
                none.clone(),
            ),
            (
                rm,
                "roles:manage removes no role",
                user(victim, "/roles/viewer"),
                none.clone(),
            ),
            (adm, "an admin demotes no superuser", user(su, "/roles/admin"), none),
        ],
        (_, p) if p.starts_with("/admin/users/{id}") => {
            let rest = &p["/admin/users/{id}".len()..];
            let body = if rest == "/password" {
                json!({"password": NEW_PASSWORD})
            } else {
                none
            };
            vec![
                (um, "users:manage acts on no admin", user(adm2, rest), body.clone()),
                (rm, "roles:manage acts on no user", user(victim, rest), body.clone()),
                (adm, "an admin acts on no superuser", user(su, rest), body),
            ]
        }
        ("POST", "/admin/roles") => vec![
            (
                um,
                "users:manage creates no role",
                "/admin/roles".into(),
                json!({"name": "sneaky"}),
            ),
            (
                rm,
                "roles:manage puts in no permission it lacks",
                "/admin/roles".into(),
                json!({"name": "sneaky", "permissions": ["users:manage"]}),
            ),
            (
                rm,
                "roles:manage puts in nothing beyond it",
                "/admin/roles".into(),
                json!({"name": "sneaky", "permissions": ["roles:manage", "users:manage"]}),
            ),
        ],
        ("PATCH", "/admin/roles/{name}") => vec![
            (
                um,
                "users:manage changes no role",
                "/admin/roles/usermgr".into(),
                json!({"permissions": ["users:manage", "roles:manage"]}),
            ),
            (
                rm,
                "roles:manage widens not its own role",
                "/admin/roles/rolemgr".into(),
                json!({"permissions": ["roles:manage", "users:read", "users:manage"]}),
            ),
            (
                rm,
                "roles:manage empties no role of what it lacks",
                "/admin/roles/analyst".into(),
                json!({"permissions": []}),
            ),
            (
                rm,
                "roles:manage changes not the admin role",
                "/admin/roles/admin".into(),
                json!({"description": "mine now"}),
            ),
        ],
        ("DELETE", "/admin/roles/{name}") => vec![
            (
                um,
                "users:manage deletes no role",
                "/admin/roles/helpdesk".into(),
                none.clone(),
            ),
            (
                rm,
                "roles:manage deletes no role beyond it",
                "/admin/roles/analyst".into(),
                none.clone(),
            ),
            (
                rm,
                "roles:manage deletes not the admin role",
                "/admin/roles/admin".into(),
                none,
            ),
        ],
        ("POST", "/admin/roles/{name}/permissions") => vec![
            (
                um,
                "users:manage grants nothing",
                "/admin/roles/usermgr/permissions".into(),
                json!({"permission": "roles:manage"}),
            ),
            (
                rm,
                "roles:manage grants its own role nothing beyond it",
                "/admin/roles/rolemgr/permissions".into(),
                json!({"permission": "users:manage"}),
            ),
            (
                rm,
                "roles:manage grants a role nothing beyond it",
                "/admin/roles/viewer/permissions".into(),
                json!({"permission": "audit:read"}),
            ),
            (
                rm,
                "roles:manage changes not the admin role",
                "/admin/roles/admin/permissions".into(),
                json!({"permission": "roles:manage"}),
            ),
        ],
        ("DELETE", "/admin/roles/{name}/permissions/{permission}") => vec![
            (
                um,
                "users:manage revokes nothing",
                "/admin/roles/viewer/permissions/reports:read".into(),
                none.clone(),
            ),
            (
                rm,
                "roles:manage takes from the admin role nothing",
                "/admin/roles/admin/permissions/users:manage".into(),
                none.clone(),
            ),
            (
                rm,
                "roles:manage takes no permission it lacks",
                "/admin/roles/analyst/permissions/projects:create".into(),
                none.clone(),
            ),
            (
                rm,
                "roles:manage changes not the admin role",
                "/admin/roles/admin/permissions/roles:manage".into(),
                none,
            ),
        ],
        ("POST", "/admin/permissions") => vec![
            // Creating a permission gives it to no one: roles:manage may (see below).
            (
                um,
                "users:manage creates no permission",
                "/admin/permissions".into(),
                json!({"name": "widgets:make"}),
            ),
        ],
        ("DELETE", "/admin/permissions/{name}") => vec![
            (
                um,
                "users:manage deletes no permission",
                "/admin/permissions/reports:read".into(),
                none.clone(),
            ),
            (
                rm,
                "roles:manage deletes no permission it lacks",
                "/admin/permissions/users:manage".into(),
                none.clone(),
            ),
            (
                rm,
                "roles:manage takes nothing from the admin role",
                "/admin/permissions/roles:manage".into(),
                none,
            ),
        ],
        (m, p) => panic!("{m} {p} changes users, roles or permissions: list its escalations here"),
    }
}

/// The admin routes that change a user, role or permission, from the route table.
fn mutating_admin_routes() -> Vec<(M, &'static str)> {
    portcullis::http::routes::table()
        .into_iter()
        .filter(|r| r.method != M::GET && r.method != M::HEAD)
        .filter(|r| {
            ["/admin/users", "/admin/roles", "/admin/permissions"]
                .iter()
                .any(|p| r.path.starts_with(p))
        })
        .map(|r| (r.method.clone(), r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesser_holders_are_refused_on_every_mutating_admin_route() {
    let routes = mutating_admin_routes();
    assert!(routes.len() >= 17, "the route table lost admin routes: {routes:?}");
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let w = world(&s).await;
        let before = snapshot(&s, &w).await;
        let mut failures = Vec::new();
        let mut tried = 0;
        for (method, path) in &routes {
            for (token, why, concrete, body) in tries(&w, method, path) {
                tried += 1;
                let res = s.call(method.clone(), &concrete, Bearer(token), Json(body)).await;
                if res.status != 403 || res.body["status"] != 403 {
                    failures.push(format!("{why}: {method} {concrete} -> {} {}", res.status, res.text));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{backend:?}: {} of {tried} tries were not refused:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert_eq!(
            snapshot(&s, &w).await,
            before,
            "{backend:?}: a refused try changed something"
        );
        // Nor did a refused password reset take effect.
        for name in ["adm2", "super", "victim"] {
            s.login_as(name, PASSWORD).await;
        }
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_still_do_what_they_hold() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let w = world(&s).await;
        let (um, rm, adm, root) = (
            w.um.access.as_str(),
            w.rm.access.as_str(),
            w.adm.access.as_str(),
            w.root.access.as_str(),
        );
        let v = |rest: &str| format!("/admin/users/{}{rest}", w.victim);
        // users:manage on a plain user, giving a role whose permissions it holds.
        let allowed: Vec<(&str, M, String, Value, u16)> = vec![
            (um, M::POST, v("/roles"), json!({"role": "helpdesk"}), 204),
            (um, M::DELETE, v("/roles/helpdesk"), json!({}), 204),
            (um, M::PATCH, v(""), json!({"email": "victim2@example.com"}), 200),
            (um, M::POST, v("/disable"), json!({}), 200),
            (um, M::POST, v("/enable"), json!({}), 200),
            (um, M::PUT, v("/password"), json!({"password": NEW_PASSWORD}), 204),
            (um, M::POST, v("/unlock"), json!({}), 204),
            (um, M::POST, v("/sessions/revoke"), json!({}), 200),
            (
                um,
                M::POST,
                "/admin/users".into(),
                json!({"username": "newbie", "email": "newbie@example.com", "password": PASSWORD, "roles": ["helpdesk"]}),
                201,
            ),
            // roles:manage on roles within what it holds, and on a new permission.
            (
                rm,
                M::POST,
                "/admin/roles".into(),
                json!({"name": "scratch", "permissions": ["users:read"]}),
                201,
            ),
            (
                rm,
                M::POST,
                "/admin/roles/scratch/permissions".into(),
                json!({"permission": "roles:manage"}),
                204,
            ),
            (
                rm,
                M::DELETE,
                "/admin/roles/scratch/permissions/users:read".into(),
                json!({}),
                204,
            ),
            (
                rm,
                M::PATCH,
                "/admin/roles/scratch".into(),
                json!({"permissions": ["users:read"]}),
                200,
            ),
            (
                rm,
                M::POST,
                "/admin/permissions".into(),
                json!({"name": "widgets:make"}),
                201,
            ),
            (rm, M::DELETE, "/admin/permissions/widgets:make".into(), json!({}), 204),
            (rm, M::DELETE, "/admin/roles/scratch".into(), json!({}), 204),
            // An administrator on another administrator and on the admin role.
            (adm, M::POST, format!("/admin/users/{}/disable", w.adm2), json!({}), 200),
            (adm, M::POST, format!("/admin/users/{}/enable", w.adm2), json!({}), 200),
            (adm, M::POST, v("/roles"), json!({"role": "admin"}), 204),
            (adm, M::DELETE, v("/roles/admin"), json!({}), 204),
            (
                adm,
                M::PATCH,
                "/admin/roles/admin".into(),
                json!({"description": "Administrators"}),
                200,
            ),
            // A superuser on a superuser.
            (
                root,
                M::PATCH,
                format!("/admin/users/{}", w.su),
                json!({"email": "su2@example.com"}),
                200,
            ),
            (
                root,
                M::PATCH,
                format!("/admin/users/{}", w.su),
                json!({"is_superuser": false}),
                200,
            ),
        ];
        for (token, method, path, body, status) in allowed {
            let what = format!("{method} {path}");
            ok(s.call(method, &path, Bearer(token), Json(body)).await, status, &what).await;
        }
        let victim: Value = s.get_auth(&v(""), root).await.json();
        assert_eq!(victim["email"], "victim2@example.com");
        assert_eq!(victim["roles"], json!(["viewer"]));
        s.login_as("victim", NEW_PASSWORD).await;
        let su: Value = s.get_auth(&format!("/admin/users/{}", w.su), root).await.json();
        assert_eq!(su["is_superuser"], false);
        s.stop().await;
    }
}

/// An API key holds its scope: a users:manage key of a superuser is no superuser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_holds_its_scope_not_its_owner() {
    for backend in backends().await {
        let (s, _db) = TestServer::start(backend).await;
        let w = world(&s).await;
        let key = ok(
            s.call(
                M::POST,
                "/auth/api-keys",
                Bearer(&w.root.access),
                Json(json!({"name": "ops", "permissions": ["users:manage", "users:read"]})),
            )
            .await,
            201,
            "api key",
        )
        .await;
        let key = key["key"].as_str().unwrap().to_string();
        let res = s
            .call(
                M::POST,
                &format!("/admin/users/{}/roles", w.victim),
                ApiKey(&key),
                Json(json!({"role": "admin"})),
            )
            .await;
        expect_problem(res, 403);
        let res = s
            .call(
                M::PATCH,
                &format!("/admin/users/{}", w.su),
                ApiKey(&key),
                Json(json!({"email": "k@example.com"})),
            )
            .await;
        expect_problem(res, 403);
        let roles: Value = s
            .get_auth(&format!("/admin/users/{}", w.victim), &w.root.access)
            .await
            .json();
        assert_eq!(roles["roles"], json!(["viewer"]));
        s.stop().await;
    }
}
