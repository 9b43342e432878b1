-- What a redirect flow is for, so the one callback URL registered at the provider
-- serves them all: 'app' (the API's: back to an app's redirect_uri with tokens),
-- 'page' (the sign-in page's buttons: a browser session, then the return_to path
-- kept in redirect_uri) and 'link' (a signed-in person adding a provider to the
-- account link_user_id). Flows begun before this were the API's.
ALTER TABLE oauth_states ADD COLUMN purpose TEXT NOT NULL DEFAULT 'app';
ALTER TABLE oauth_states ADD COLUMN link_user_id BLOB;
