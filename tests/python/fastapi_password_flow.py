"""A FastAPI service written the way the replaced services were: OAuth2PasswordBearer
pointing at the token URL, its client posting only a username and a password there
(OAuth2PasswordRequestForm style). Here the token URL is Portcullis's /auth/token, and
the service's dependency asks Portcullis who the bearer is.

Usage: fastapi_password_flow.py BASE_URL USERNAME PASSWORD
Prints one JSON object: what the client and the protected route saw.
"""

import json
import sys

import httpx
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer
from fastapi.testclient import TestClient

base, username, password = sys.argv[1:4]

app = FastAPI()
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=f"{base}/auth/token")


def current_user(token: str = Depends(oauth2_scheme)) -> dict:
    me = httpx.get(f"{base}/auth/me", headers={"Authorization": f"Bearer {token}"})
    if me.status_code != 200:
        raise HTTPException(status_code=401, detail="Could not validate credentials")
    return me.json()


@app.get("/items/")
def read_items(user: dict = Depends(current_user)) -> dict:
    return {"owner": user["username"]}


# The client: exactly the form OAuth2PasswordRequestForm reads, nothing more.
reply = httpx.post(f"{base}/auth/token", data={"username": username, "password": password})
out = {"token_status": reply.status_code, "token_body_keys": sorted(reply.json().keys())}
if reply.status_code == 200:
    body = reply.json()
    out["token_type"] = body.get("token_type")
    client = TestClient(app)
    items = client.get("/items/", headers={"Authorization": f"Bearer {body['access_token']}"})
    out["items_status"] = items.status_code
    out["items"] = items.json()
    out["unauthenticated_status"] = client.get("/items/").status_code
    scheme = app.openapi()["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    out["openapi_token_url"] = scheme["flows"]["password"]["tokenUrl"]
print(json.dumps(out))
