//! API keys through the service, on both backends: a key is printed once with a recognisable
//! prefix and at least 128 random bits, the database keeps only a keyed hash of it, a key
//! authenticates as its client with its role and bindings, and a malformed, unknown, tampered
//! or revoked key is refused with one and the same answer. Names are unique forever, a store
//! binding is checked against its retailer, and every change is in an intact audit trail.

use sha2::{Digest, Sha256};
use tender::domain::{Actor, ApiRole, RetailerId};
use tender::error::Classify;
use tender::keys::KeyPurpose;
use tender::service::api_keys::{API_KEY_PREFIX, ApiKeyError, ApiKeyForm, CreatedApiKey};
use tender::service::cards::StoreForm;
use tender::store::{DbPool, Store};

use crate::helpers::{TestApp, actor, both_backends};

/// Retailers Acme (store S-1) and Bolt (store S-2).
async fn retailers_with_stores<S: Store>(env: &TestApp<S>) {
    let services = env.app.services();
    for (retailer, store) in [("Acme", "S-1"), ("Bolt", "S-2")] {
        services
            .retailers()
            .add(retailer, "2.5", &actor())
            .await
            .unwrap();
        let form = StoreForm {
            retailer: retailer.into(),
            store: store.into(),
            jurisdiction: "US-CA".into(),
        };
        services.cards().add_store(&form, &actor()).await.unwrap();
    }
}

fn form(name: &str, role: &str, retailer: Option<&str>, store: Option<&str>) -> ApiKeyForm {
    ApiKeyForm {
        name: name.into(),
        role: role.into(),
        retailer: retailer.map(Into::into),
        store: store.map(Into::into),
    }
}

async fn create<S: Store>(env: &TestApp<S>, form: &ApiKeyForm) -> CreatedApiKey {
    env.app
        .services()
        .api_keys()
        .create(form, &actor())
        .await
        .unwrap()
}

/// The secret: the part after the key id.
fn secret_of(key: &str) -> &str {
    key.rsplit_once('_').unwrap().1
}

async fn a_created_key_authenticates_as_its_client_with_role_and_bindings<S: Store>(
    env: TestApp<S>,
) {
    retailers_with_stores(&env).await;
    let keys = env.app.services().api_keys();
    let till = create(
        &env,
        &form("acme-s1-till", "pos", Some("Acme"), Some("S-1")),
    )
    .await;
    let back_office = create(&env, &form("acme-pos", "pos", Some("acme"), None)).await;
    let admin = create(&env, &form("ops", "admin", None, None)).await;

    // The key is recognisable, and its secret alone holds at least 128 random bits (base32:
    // 5 bits a character).
    for created in [&till, &back_office, &admin] {
        let key = created.key.expose();
        assert!(key.starts_with(API_KEY_PREFIX), "{key}");
        assert!(key.starts_with("tdr_live_"));
        assert!(secret_of(key).len() * 5 >= 128, "{key}");
        assert!(key.contains(&created.client.key_id));
        assert!(!format!("{created:?}").contains(secret_of(key)));
    }

    let client = keys.authenticate(till.key.expose()).await.unwrap();
    assert_eq!(client, till.client);
    assert_eq!(client.role, ApiRole::Pos);
    assert_eq!(client.retailer_id, Some(RetailerId(1)));
    assert_eq!(client.store.as_ref().map(|s| s.as_str()), Some("S-1"));
    assert_eq!(Actor::api(&client.name).as_str(), "api:acme-s1-till");

    let client = keys.authenticate(back_office.key.expose()).await.unwrap();
    assert_eq!(
        (client.retailer_id, client.store),
        (Some(RetailerId(1)), None)
    );

    let client = keys.authenticate(admin.key.expose()).await.unwrap();
    assert_eq!(client.role, ApiRole::Admin);
    assert_eq!((client.retailer_id, client.store), (None, None));

    let listed = keys
        .list(tender::domain::PageRows::new(10).unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["acme-pos", "acme-s1-till", "ops"]);
    assert!(env.verify().await.is_intact());
}
both_backends!(
    create_and_authenticate,
    a_created_key_authenticates_as_its_client_with_role_and_bindings
);

/// The stored MAC of the key named `name`.
async fn stored_mac<S: Store>(env: &TestApp<S>, name: &str) -> Vec<u8> {
    let sql = "SELECT secret_mac FROM api_client WHERE name = $1";
    match env.store().db_pool() {
        DbPool::Sqlite(pool) => sqlx::query_scalar(sql).bind(name).fetch_one(&pool).await,
        DbPool::Postgres(pool) => sqlx::query_scalar(sql).bind(name).fetch_one(&pool).await,
    }
    .unwrap()
}

async fn the_database_and_the_trail_hold_no_secret_and_no_plain_hash<S: Store>(env: TestApp<S>) {
    let created = create(&env, &form("ops", "admin", None, None)).await;
    let key = created.key.expose();
    let secret = secret_of(key);

    // No text column of the table, and no audit record, holds the key or its secret.
    let columns = "name || role || coalesce(store_code, '') || key_id || created_by";
    for needle in [key, secret] {
        let sql = format!("SELECT count(*) FROM api_client WHERE {columns} LIKE '%{needle}%'");
        assert_eq!(env.count(&sql).await, 0);
        let sql = format!("SELECT count(*) FROM audit_record WHERE details LIKE '%{needle}%'");
        assert_eq!(env.count(&sql).await, 0);
    }
    // The stored hash is keyed: no plain hash of the key or the secret, and not in the trail.
    let mac = stored_mac(&env, "ops").await;
    assert_eq!(mac.len(), 32);
    for plain in [Sha256::digest(key), Sha256::digest(secret)] {
        assert_ne!(mac, plain.as_slice());
    }
    let sql = format!(
        "SELECT count(*) FROM audit_record WHERE details LIKE '%{}%'",
        hex::encode(&mac)
    );
    assert_eq!(env.count(&sql).await, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'api_key.created'")
            .await,
        1
    );
    // On SQLite, not one byte of the database's files holds the secret either.
    if let DbPool::Sqlite(_) = env.store().db_pool() {
        for entry in std::fs::read_dir(env.db.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "{} holds the secret", path.display());
            }
        }
    }
}
both_backends!(
    no_secret_stored,
    the_database_and_the_trail_hold_no_secret_and_no_plain_hash
);

async fn unknown_tampered_malformed_and_revoked_keys_get_one_answer<S: Store>(env: TestApp<S>) {
    let keys = env.app.services().api_keys();
    let ops = create(&env, &form("ops", "admin", None, None)).await;
    let gone = create(&env, &form("gone", "support", None, None)).await;
    keys.revoke("gone", &actor()).await.unwrap();
    let key = ops.key.expose();

    // One character of the secret changed, one of the key id changed, ops' id with gone's
    // secret, a key never issued, and shapes that are no key at all.
    let flip = |text: &str, at: usize| {
        let mut bytes = text.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
        String::from_utf8(bytes).unwrap()
    };
    let swapped = format!(
        "{}_{}",
        key.rsplit_once('_').unwrap().0,
        secret_of(gone.key.expose())
    );
    let never = format!("{API_KEY_PREFIX}{}_{}", "a".repeat(16), "a".repeat(32));
    let refused = [
        gone.key.expose().to_string(),
        flip(key, key.len() - 1),
        flip(key, API_KEY_PREFIX.len()),
        swapped,
        never,
        String::new(),
        format!("Bearer {key}"),
        format!("{key} "),
        key.to_uppercase(),
        key.repeat(100),
    ];
    for presented in &refused {
        let err = keys.authenticate(presented).await.unwrap_err();
        assert!(
            matches!(err, ApiKeyError::Unauthenticated),
            "{presented}: {err:?}"
        );
        assert_eq!(err.code(), "api_key.unauthenticated");
        assert_eq!(err.to_string(), "the API key is not valid");
    }
    // The real key still works, and the revoked one is listed as revoked.
    assert_eq!(keys.authenticate(key).await.unwrap().name.as_str(), "ops");
    let sql = "SELECT count(*) FROM api_client WHERE name = 'gone' AND revoked_by IS NOT NULL";
    assert_eq!(env.count(sql).await, 1);
    assert!(env.verify().await.is_intact());
}
both_backends!(
    one_refusal,
    unknown_tampered_malformed_and_revoked_keys_get_one_answer
);

async fn names_are_unique_forever_and_revoking_twice_is_refused<S: Store>(env: TestApp<S>) {
    let keys = env.app.services().api_keys();
    create(&env, &form("ops", "admin", None, None)).await;
    let code = |e: ApiKeyError| e.code();

    let taken = keys
        .create(&form("ops", "finance", None, None), &actor())
        .await;
    assert_eq!(taken.map(|_| ()).map_err(code), Err("api_key.name_taken"));

    keys.revoke("ops", &actor()).await.unwrap();
    let again = keys.revoke("ops", &actor()).await;
    assert_eq!(
        again.map(|_| ()).map_err(code),
        Err("api_key.already_revoked")
    );
    // A revoked key's name stays its own: `api:ops` in the trail names one client.
    let taken = keys
        .create(&form("ops", "admin", None, None), &actor())
        .await;
    assert_eq!(taken.map(|_| ()).map_err(code), Err("api_key.name_taken"));

    let unknown = keys.revoke("nobody", &actor()).await;
    assert_eq!(unknown.map(|_| ()).map_err(code), Err("api_key.unknown"));

    let longest = "a".repeat(tender::domain::API_KEY_NAME_MAX_CHARS);
    for (name, role, refusal) in [
        (format!("{longest}a"), "admin", "api_key.bad_name"),
        ("Ops".into(), "admin", "api_key.bad_name"),
        ("ops:1".into(), "admin", "api_key.bad_name"),
        ("ops-2".into(), "root", "api_key.bad_role"),
    ] {
        let refused = keys.create(&form(&name, role, None, None), &actor()).await;
        assert_eq!(refused.map(|_| ()).map_err(code), Err(refusal), "{name}");
    }
    create(&env, &form(&longest, "admin", None, None)).await;
    assert_eq!(env.count("SELECT count(*) FROM api_client").await, 2);
    let sql = "SELECT count(*) FROM audit_record WHERE action LIKE 'api_key.%'";
    assert_eq!(env.count(sql).await, 3);
    assert!(env.verify().await.is_intact());
}
both_backends!(
    unique_names,
    names_are_unique_forever_and_revoking_twice_is_refused
);

async fn only_a_pos_key_is_bound_and_only_to_its_retailers_store<S: Store>(env: TestApp<S>) {
    retailers_with_stores(&env).await;
    let keys = env.app.services().api_keys();
    for (form, refusal) in [
        // A pos key names its retailer; a store alone is not enough.
        (form("t1", "pos", None, None), "api_key.retailer_required"),
        (
            form("t1", "pos", None, Some("S-1")),
            "api_key.retailer_required",
        ),
        // Bolt's store is not Acme's; a retailer or store that does not exist.
        (
            form("t1", "pos", Some("Acme"), Some("S-2")),
            "pos.unknown_store",
        ),
        (
            form("t1", "pos", Some("Acme"), Some("S-9")),
            "pos.unknown_store",
        ),
        (
            form("t1", "pos", Some("Nobody"), None),
            "store.unknown_retailer",
        ),
        (form("t1", "pos", Some("Acme"), Some("S 1")), "pos.bad_id"),
        // Every other role acts for all of tender.
        (
            form("t1", "support", Some("Acme"), None),
            "api_key.binding_not_allowed",
        ),
        (
            form("t1", "redeem", None, Some("S-1")),
            "api_key.binding_not_allowed",
        ),
    ] {
        let refused = keys.create(&form, &actor()).await.unwrap_err();
        assert_eq!(refused.code(), refusal, "{form:?}");
    }
    assert_eq!(env.count("SELECT count(*) FROM api_client").await, 0);
    let sql = "SELECT count(*) FROM audit_record WHERE action LIKE 'api_key.%'";
    assert_eq!(env.count(sql).await, 0);

    let bolt = create(&env, &form("t1", "pos", Some("Bolt"), Some("S-2"))).await;
    assert_eq!(bolt.client.retailer_id, Some(RetailerId(2)));
    assert!(env.verify().await.is_intact());
}
both_backends!(
    store_binding,
    only_a_pos_key_is_bound_and_only_to_its_retailers_store
);

async fn a_lookup_key_rotation_leaves_every_api_key_working<S: Store>(env: TestApp<S>) {
    let keys = env.app.services().api_keys();
    let before = create(&env, &form("before", "finance", None, None)).await;
    let admin = env.app.services().keys();
    let key_dir = env.db.settings().key_dir();
    let id = admin
        .add(KeyPurpose::Lookup, &key_dir, &actor())
        .await
        .unwrap();
    assert!(
        admin
            .activate(KeyPurpose::Lookup, id, &actor())
            .await
            .unwrap()
    );

    let after = create(&env, &form("after", "warehouse", None, None)).await;
    let mac_key = "SELECT count(*) FROM api_client WHERE name = 'after' AND mac_key_id = 2";
    assert_eq!(
        env.count(mac_key).await,
        1,
        "a new key is hashed under the active one"
    );
    for (created, name) in [(&before, "before"), (&after, "after")] {
        let client = keys.authenticate(created.key.expose()).await.unwrap();
        assert_eq!(client.name.as_str(), name);
    }
    assert!(env.verify().await.is_intact());
}
both_backends!(
    lookup_key_rotation,
    a_lookup_key_rotation_leaves_every_api_key_working
);
