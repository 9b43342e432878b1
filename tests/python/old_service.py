"""What the replaced service did with python-jose and passlib: mint an access token
(HS256 with its secret, {"sub", "exp"}, no kid) and hash passwords.

Usage: old_service.py token SECRET SUBJECT MINUTES
       old_service.py hash SCHEME PASSWORD      (SCHEME: bcrypt or bcrypt_sha256)
Prints the token or the hash.
"""

import sys
from datetime import datetime, timedelta, timezone

from jose import jwt
from passlib.context import CryptContext

command = sys.argv[1]
if command == "token":
    secret, subject, minutes = sys.argv[2], sys.argv[3], int(sys.argv[4])
    expire = datetime.now(timezone.utc) + timedelta(minutes=minutes)
    print(jwt.encode({"sub": subject, "exp": expire}, secret, algorithm="HS256"))
elif command == "hash":
    scheme, password = sys.argv[2], sys.argv[3]
    # Low rounds keep the test quick; the format is passlib's own.
    context = CryptContext(schemes=[scheme], deprecated="auto", **{f"{scheme}__rounds": 5})
    print(context.hash(password))
else:
    sys.exit(f"unknown command {command!r}")
