#!/usr/bin/env python3
"""One SASL exchange with a Dovecot auth socket, to check the oauth2 passdb without Postfix.

    python3 dovecot-auth-probe.py AUTH_CLIENT_SOCKET xoauth2|oauthbearer USER TOKEN

Prints Dovecot's answer: `OK ...` when the token is accepted; for a rejected token the
decoded JSON challenge (`CONT {"status":"401",...}`) and then `FAIL ...`. (doveadm auth test in
Dovecot 2.3 cannot pick a SASL mechanism.)
"""
import socket, sys, base64, os
sock_path, mech, user, token = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX); s.connect(sock_path)
f = s.makefile('rwb', buffering=0)
f.write(b"VERSION\t1\t2\nCPID\t%d\n" % os.getpid())
while True:
    line = f.readline().decode().rstrip("\n")
    if line == "DONE": break
if mech == "xoauth2":
    ir = f"user={user}\x01auth=Bearer {token}\x01\x01"
else:
    ir = f"n,a={user},\x01host=localhost\x01port=587\x01auth=Bearer {token}\x01\x01"
resp = base64.b64encode(ir.encode()).decode()
f.write(f"AUTH\t1\t{mech.upper()}\tservice=smtp\tnologin\tresp={resp}\n".encode())
while True:
    line = f.readline().decode().rstrip("\n")
    parts = line.split("\t")
    if parts[0] == "CONT":
        print("CONT", base64.b64decode(parts[2]).decode(errors="replace"))
        f.write(b"CONT\t1\t" + (b"AQ==" if mech == "oauthbearer" else b"") + b"\n")
        continue
    print(line); break
