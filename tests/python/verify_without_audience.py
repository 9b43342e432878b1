"""Verifies a Portcullis access token the way the replaced services' verifiers do:
python-jose and PyJWT, naming the algorithm and the key but asking for no audience
(both then refuse a token that carries an `aud`).

Usage: verify_without_audience.py TOKEN (jwks JWKS_URL | secret SECRET)
Prints one JSON object per library: {"library", "ok", "sub" or "error"}.
"""

import json
import sys

import httpx
import jwt as pyjwt
from jose import jwt as jose_jwt

token, kind, source = sys.argv[1:4]
alg = pyjwt.get_unverified_header(token)["alg"]


def result(library, verify):
    try:
        claims = verify()
        return {"library": library, "ok": True, "sub": claims["sub"]}
    except Exception as e:  # the library's own refusal, reported to the test
        return {"library": library, "ok": False, "error": f"{type(e).__name__}: {e}"}


if kind == "jwks":
    jwks = httpx.get(source).json()
    kid = pyjwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    results = [
        result("python-jose", lambda: jose_jwt.decode(token, jwks, algorithms=[alg])),
        result("PyJWT", lambda: pyjwt.decode(token, pyjwt.PyJWK(jwk).key, algorithms=[alg])),
    ]
else:
    results = [
        result("python-jose", lambda: jose_jwt.decode(token, source, algorithms=["HS256"])),
        result("PyJWT", lambda: pyjwt.decode(token, source, algorithms=["HS256"])),
    ]
for r in results:
    print(json.dumps(r))
