#!/usr/bin/env python3
"""Helper for scripts/bench-e2e.sh (the driver; run that, not this).

Subcommands (each prints one JSON object on stdout unless noted):

  domains MIXDIR                    sender domains of a message mix, deliverable or not
  load MIXDIR MAILDIR UID GID       copy every *.eml into MAILDIR/new (via tmp/, unique
                                    Maildir names, mode 0600, owned by UID:GID); bytes untouched
  imap-exists PORT USER             SELECT INBOX: EXISTS
  imap-fetch PORT USER CHUNK        bare imaplib fetch of the whole INBOX (UID FETCH
                                    BODY.PEEK[] in chunks): timings, messages, bytes
  imap-unseen PORT USER             SELECT INBOX: EXISTS, SEARCH UNSEEN, SEARCH UNKEYWORD $Secintake
  db DB                             counts from the secintake database (messages, outbox by kind)
  maildir-count MAILROOT SKIPUSER   files in every Maildir (new+cur) below MAILROOT except SKIPUSER
  wait-delivered MAILROOT SKIPUSER EXPECTED QUEUEDIR TIMEOUT
                                    wait for the MTA queue to empty and EXPECTED files to land
  run-assemble RESULTS_DIR I COUNT  combine run I's parts and check them (prints failures)
  once-parse STDOUT TIMEV WALL      the `secintake once` summary line, `time -v` figures
  latency SMTP_PORT TO FROM ACKDIR N OUT
                                    submit N reports one by one, wait for each ack file
  latency-parse LOG SUBMITS         match the daemon log against the submissions
  config DEMO_TOML OUT IMAP_PORT SMTP_PORT WORKDIR   write the benchmark config (+ password file)
  latency-check RESULTS_DIR N DAEMON_EXIT             correctness checks of the latency phase
  summary RESULTS_DIR               print the final report (text)
"""

import email.parser
import email.utils
import glob
import imaplib
import json
import os
import re
import smtplib
import sqlite3
import statistics
import sys
import time
import datetime

DELIVERABLE = {"example.org", "example.com", "example.net"}


def out(obj):
    json.dump(obj, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    if not v:
        return None
    k = max(1, -(-len(v) * p // 100))  # ceil(n*p/100), at least 1
    return v[int(k) - 1]


# ------------------------------------------------------------------------------ mix / load --

def addr_domain(value):
    addr = email.utils.parseaddr(value or "")[1]
    return addr.rsplit("@", 1)[1].lower() if "@" in addr else ""


def cmd_domains(mixdir):
    parser = email.parser.BytesHeaderParser()
    from_dom, rp_dom, reply_dom = {}, {}, {}
    n = deliverable_from = 0
    for name in sorted(os.listdir(mixdir)):
        if not name.endswith(".eml"):
            continue
        with open(os.path.join(mixdir, name), "rb") as f:
            head = f.read(65536).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        h = parser.parsebytes(head)
        n += 1
        d = addr_domain(h.get("From"))
        from_dom[d] = from_dom.get(d, 0) + 1
        deliverable_from += d in DELIVERABLE
        if h.get("Return-Path") is not None:
            rp = h.get("Return-Path").strip()
            d2 = "<>" if rp in ("<>", "") else addr_domain(rp)
            rp_dom[d2] = rp_dom.get(d2, 0) + 1
        if h.get("Reply-To") is not None:
            d3 = addr_domain(h.get("Reply-To"))
            reply_dom[d3] = reply_dom.get(d3, 0) + 1
    out({"messages": n, "from_deliverable": deliverable_from, "from_domains": from_dom,
         "return_path_domains": rp_dom, "reply_to_domains": reply_dom})


def cmd_load(mixdir, maildir, uid, gid):
    uid, gid = int(uid), int(gid)
    names = sorted(n for n in os.listdir(mixdir) if n.endswith(".eml"))
    tmp, new = os.path.join(maildir, "tmp"), os.path.join(maildir, "new")
    for d in (maildir, tmp, new, os.path.join(maildir, "cur")):
        os.makedirs(d, mode=0o700, exist_ok=True)
    base = int(time.time())
    pid = os.getpid()
    t0 = time.monotonic()
    total = 0
    for i, name in enumerate(names, 1):
        with open(os.path.join(mixdir, name), "rb") as f:
            data = f.read()
        total += len(data)
        # Dovecot-style unique name; S= is the file size so Dovecot need not stat it.
        fname = f"{base}.M{i}P{pid}.secintake-bench,S={len(data)}"
        tpath = os.path.join(tmp, fname)
        fd = os.open(tpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chown(tpath, uid, gid)
        os.rename(tpath, os.path.join(new, fname))
    out({"files": len(names), "bytes": total, "seconds": round(time.monotonic() - t0, 3)})


# ------------------------------------------------------------------------------------ IMAP --

def imap_login(port, user):
    c = imaplib.IMAP4("127.0.0.1", int(port))
    c.login(user, "secret")
    return c


def cmd_imap_exists(port, user):
    c = imap_login(port, user)
    typ, data = c.select("INBOX")
    c.logout()
    out({"exists": int(data[0]) if typ == "OK" else -1})


def cmd_imap_fetch(port, user, chunk):
    chunk = int(chunk)
    t0 = time.monotonic()
    c = imap_login(port, user)
    typ, data = c.select("INBOX", readonly=True)
    exists = int(data[0])
    typ, data = c.uid("SEARCH", None, "ALL")
    uids = [int(u) for u in data[0].split()]
    t1 = time.monotonic()
    n = nbytes = 0
    for i in range(0, len(uids), chunk):
        part = uids[i:i + chunk]
        typ, data = c.uid("FETCH", f"{part[0]}:{part[-1]}", "(BODY.PEEK[])")
        if typ != "OK":
            raise SystemExit(f"UID FETCH failed: {data!r}")
        for item in data:
            if isinstance(item, tuple):
                n += 1
                nbytes += len(item[1])
    t2 = time.monotonic()
    c.logout()
    out({"exists": exists, "messages": n, "bytes": nbytes, "fetch_seconds": round(t2 - t1, 3),
         "total_seconds": round(t2 - t0, 3)})


def cmd_imap_unseen(port, user):
    c = imap_login(port, user)
    typ, data = c.select("INBOX", readonly=True)
    exists = int(data[0])
    typ, data = c.search(None, "UNSEEN")
    unseen = data[0].split()
    typ, data = c.search(None, "UNKEYWORD", "$Secintake")
    unkw = data[0].split()
    c.logout()
    out({"exists": exists, "unseen": len(unseen), "unseen_first": [x.decode() for x in unseen[:10]],
         "without_keyword": len(unkw)})


# ---------------------------------------------------------------------------- DB / Maildir --

def cmd_db(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    q = lambda sql: con.execute(sql).fetchall()
    res = {
        "messages": q("SELECT COUNT(*) FROM messages")[0][0],
        "verdicts": dict(q("SELECT verdict, COUNT(*) FROM messages GROUP BY verdict")),
        "cases": q("SELECT COUNT(*) FROM cases")[0][0],
        "outbox_total": q("SELECT COUNT(*) FROM outbox")[0][0],
        "outbox_unsent": q("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")[0][0],
        "outbox_pending": q("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")[0][0],
        "outbox_failed": q("SELECT COUNT(*) FROM outbox WHERE failed_at IS NOT NULL")[0][0],
        "outbox_sent": q("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")[0][0],
    }
    by_kind = {}
    for kind, total, sent, failed, pending in q(
            "SELECT kind, COUNT(*), SUM(sent_at IS NOT NULL), SUM(failed_at IS NOT NULL),"
            " SUM(sent_at IS NULL AND failed_at IS NULL) FROM outbox GROUP BY kind"):
        by_kind[kind] = {"queued": total, "sent": sent, "failed": failed, "pending": pending}
    res["outbox_by_kind"] = by_kind
    # Recipient copies the MTA should deliver (sent rows, one file per recipient).
    rcpt_sent = 0
    rcpt_dom = {}
    for (recips,) in q("SELECT recipients FROM outbox WHERE sent_at IS NOT NULL"):
        for r in json.loads(recips):
            rcpt_sent += 1
    for kind, recips in q("SELECT kind, recipients FROM outbox"):
        for r in json.loads(recips):
            d = r.rsplit("@", 1)[-1].lower()
            key = f"{kind}:{'deliverable' if d in DELIVERABLE else 'foreign'}"
            rcpt_dom[key] = rcpt_dom.get(key, 0) + 1
    res["recipient_copies_sent"] = rcpt_sent
    res["recipients_by_kind_domain"] = rcpt_dom
    errs = q("SELECT last_error, COUNT(*) FROM outbox WHERE failed_at IS NOT NULL OR last_error != ''"
             " GROUP BY last_error ORDER BY 2 DESC LIMIT 5")
    res["top_errors"] = [[e[:160], c] for e, c in errs]
    out(res)


def maildir_count(root, skip):
    n = 0
    per = {}
    for md in glob.glob(os.path.join(root, "*", "*", "Maildir")):
        user = md.split(os.sep)[-2] + "@" + md.split(os.sep)[-3]
        if user.split("@")[0] == skip:
            continue
        c = sum(len(os.listdir(os.path.join(md, sub))) for sub in ("new", "cur")
                if os.path.isdir(os.path.join(md, sub)))
        per[user] = c
        n += c
    return {"files": n, "per_mailbox": per}


def queue_files(qdir):
    n = 0
    for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _, _, files in os.walk(os.path.join(qdir, sub)):
            n += len(files)
    return n


def cmd_maildir_count(root, skip):
    out(maildir_count(root, skip))


def cmd_wait_delivered(root, skip, expected, qdir, timeout):
    """Waits until the MTA queue is empty and at least EXPECTED files are in the Maildirs."""
    expected, timeout = int(expected), float(timeout)
    t0 = time.monotonic()
    while True:
        m = maildir_count(root, skip)
        q = queue_files(qdir)
        waited = time.monotonic() - t0
        if (m["files"] >= expected and q == 0) or waited > timeout:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # anything still trickling in (more files than expected is a finding too)
    m = maildir_count(root, skip)
    m.update({"queue_files": queue_files(qdir), "waited_seconds": round(waited, 2),
              "expected": expected, "timed_out": waited > timeout})
    out(m)


def cmd_run_assemble(rdir, i, count, smtp_connections="0"):
    """Combines one run's parts into run{i}.json with the correctness checks."""
    count = int(count)
    part = lambda n: json.load(open(os.path.join(rdir, f"run{i}-{n}.json")))
    once, imap, db, md = part("once"), part("imap"), part("db"), part("maildir")
    failed = []
    if "parse_error" in once:
        failed.append("secintake once printed no summary line")
    else:
        if once["recorded"] != count or once["errors"] or once["duplicates"] or once["unreachable"]:
            failed.append(f"once: {once['recorded']} recorded, {once['duplicates']} duplicates, "
                          f"{once['errors']} errors (expected {count}/0/0)")
        if once["deferred"] or once["failed"]:
            failed.append(f"once: mail {once['sent']} sent, {once['deferred']} deferred, "
                          f"{once['failed']} failed")
    if once.get("exit_status") not in (0, None):
        failed.append(f"secintake once exited with status {once.get('exit_status')}")
    if imap["unseen"]:
        failed.append(f"IMAP SEARCH UNSEEN returned {imap['unseen']} messages (first {imap['unseen_first']})")
    if imap["without_keyword"]:
        failed.append(f"{imap['without_keyword']} messages lack the $Secintake keyword")
    if imap["exists"] != count:
        failed.append(f"INBOX EXISTS {imap['exists']} after the run (expected {count})")
    if db["messages"] != count:
        failed.append(f"SELECT COUNT(*) FROM messages = {db['messages']} (expected {count})")
    if db["outbox_unsent"]:
        kinds = {k: v["failed"] for k, v in db["outbox_by_kind"].items() if v["failed"]}
        failed.append(f"outbox WHERE sent_at IS NULL = {db['outbox_unsent']} (expected 0): "
                      f"{db['outbox_failed']} failed for good {kinds}, {db['outbox_pending']} pending; "
                      f"top error: {db['top_errors'][0] if db['top_errors'] else '-'}")
    if md["timed_out"] or md["files"] != md["expected"]:
        failed.append(f"Postfix delivered {md['files']} recipient copies, expected {md['expected']} "
                      f"(queue files left: {md['queue_files']}, waited {md['waited_seconds']} s)")
    res = {"once": once, "imap": imap, "db": db, "maildir": md, "smtp_connections": int(smtp_connections),
           "lmtp_wait_seconds": md["waited_seconds"], "checks_failed": failed}
    with open(os.path.join(rdir, f"run{i}.json"), "w") as f:
        json.dump(res, f, indent=1)
    for c in failed:
        print(f"  CHECK FAILED: {c}")


# ------------------------------------------------------------------------------------ once --

ONCE_RE = re.compile(
    r"mailbox: (\d+) recorded, (\d+) duplicates, (\d+) errors(, mailbox unreachable)? in ([\d.]+)s; "
    r"mail: (\d+) sent, (\d+) deferred, (\d+) failed in ([\d.]+)s")


def cmd_once_parse(stdout_path, timev_path, wall):
    text = open(stdout_path, errors="replace").read()
    m = ONCE_RE.search(text)
    res = {"wall_seconds": float(wall)}
    if m:
        res.update({"recorded": int(m[1]), "duplicates": int(m[2]), "errors": int(m[3]),
                    "unreachable": bool(m[4]), "fetch_seconds": float(m[5]), "sent": int(m[6]),
                    "deferred": int(m[7]), "failed": int(m[8]), "send_seconds": float(m[9])})
    else:
        res["parse_error"] = "no summary line in secintake's output"
    tv = open(timev_path, errors="replace").read()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv)
    res["max_rss_kib"] = int(m[1]) if m else None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", tv)
    res["timev_wall_seconds"] = (int(m[1] or 0) * 3600 + int(m[2]) * 60 + float(m[3])) if m else None
    for key, pat in (("user_seconds", r"User time \(seconds\): ([\d.]+)"),
                     ("system_seconds", r"System time \(seconds\): ([\d.]+)"),
                     ("cpu_percent", r"Percent of CPU this job got: (\d+)%"),
                     ("exit_status", r"Exit status: (\d+)"),
                     ("vol_ctx", r"Voluntary context switches: (\d+)"),
                     ("invol_ctx", r"Involuntary context switches: (\d+)")):
        m = re.search(pat, tv)
        res[key] = (float(m[1]) if "." in m[1] else int(m[1])) if m else None
    out(res)


# --------------------------------------------------------------------------------- latency --

REPORT = (
    "From: Reporter Bench <{frm}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
    "Date: {date}\r\nMessage-ID: <{mid}>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    "Hello,\r\n\r\nAn unauthenticated attacker can {what} on an Apache Tomcat server.\r\n"
    "Proof of concept (PoC):\r\n\r\n  curl -s 'http://target.test:8080/{path}'\r\n\r\n"
    "I have not disclosed this anywhere yet. Reference {n}.\r\n\r\nRegards,\r\nReporter Bench\r\n")
WHAT = ["read arbitrary files through the WebDAV servlet", "bypass the security constraint",
        "trigger remote code execution via a crafted session file", "cause request smuggling",
        "exhaust memory with a crafted multipart upload", "inject headers into the response"]


def cmd_latency(smtp_port, to, frm, ackdir, n, outpath):
    n = int(n)
    tag = f"{os.getpid()}-{int(time.time())}"
    results = []
    seen = set(os.listdir(ackdir)) if os.path.isdir(ackdir) else set()
    for i in range(1, n + 1):
        mid = f"bench-{tag}-{i}@example.com"
        subject = f"[bench {i}] Tomcat: {WHAT[i % len(WHAT)]} (variant {tag}-{i})"
        raw = REPORT.format(frm=frm, to=to, subject=subject, date=email.utils.formatdate(),
                            mid=mid, what=WHAT[i % len(WHAT)], path=f"..%2f{i}%2fconf", n=i)
        s = smtplib.SMTP("127.0.0.1", int(smtp_port), timeout=30)
        s.ehlo()
        submit = time.time()
        s.sendmail(frm, [to], raw.encode())
        accepted = time.time()
        s.quit()
        ack_time = None
        ack_file = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                now_names = set(os.listdir(ackdir))
            except FileNotFoundError:
                now_names = set()
            fresh = now_names - seen
            if fresh:
                ack_time = time.time()
                seen |= fresh
                ack_file = sorted(fresh)[0]
                break
            time.sleep(0.005)
        ok_ref = None
        if ack_file:
            try:
                body = open(os.path.join(ackdir, ack_file), "rb").read(65536)
                ok_ref = mid.encode() in body
            except OSError:
                pass
        results.append({"i": i, "message_id": mid, "submit": submit, "accepted": accepted,
                        "ack": ack_time, "ack_refers_to_report": ok_ref,
                        "extra_files": max(0, len(fresh) - 1) if ack_file else 0})
        time.sleep(0.2)  # let the daemon settle back into IDLE
    with open(outpath, "w") as f:
        json.dump(results, f, indent=1)
    out({"reports": n, "acked": sum(r["ack"] is not None for r in results)})


LOG_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s+(\w+)\s+(.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_ts(s):
    if "." in s:
        main, frac = s.split(".")
        frac = (frac + "000000")[:6]
        s = f"{main}.{frac}"
        fmt = "%Y-%m-%dT%H:%M:%S.%f"
    else:
        fmt = "%Y-%m-%dT%H:%M:%S"
    return datetime.datetime.strptime(s, fmt).replace(tzinfo=datetime.timezone.utc).timestamp()


def cmd_latency_parse(logpath, submits_path):
    subs = json.load(open(submits_path))
    idle, recorded, drained, other_warn = [], [], [], []
    for line in open(logpath, errors="replace"):
        line = ANSI.sub("", line.rstrip("\n"))
        m = LOG_RE.match(line)
        if not m:
            continue
        ts, level, rest = parse_ts(m[1]), m[2], m[3]
        if "IDLE: the server announced new mail" in rest:
            idle.append(ts)
        elif "message recorded" in rest:
            recorded.append(ts)
        elif "outbox drained" in rest:
            drained.append((ts, rest))
        if level in ("WARN", "ERROR"):
            other_warn.append(line[:300])
    rows = []
    for k, s in enumerate(subs):
        sub = s["submit"]
        nxt = subs[k + 1]["submit"] if k + 1 < len(subs) else float("inf")
        d = next((t for t, _ in drained if sub <= t < nxt), None)
        w = r = None
        if d is not None:
            ws = [t for t in idle if sub <= t <= d]
            w = ws[-1] if ws else None
            rs = [t for t in recorded if sub <= t <= d]
            r = rs[-1] if rs else None
        rows.append({"i": s["i"], "submit_to_drained": None if d is None else d - sub,
                     "idle_to_drained": None if (d is None or w is None) else d - w,
                     "submit_to_idle": None if w is None else w - sub,
                     "idle_to_recorded": None if (w is None or r is None) else r - w,
                     "recorded_to_drained": None if (r is None or d is None) else d - r,
                     "submit_to_ack_file": None if s["ack"] is None else s["ack"] - sub,
                     "smtp_accept": s["accepted"] - sub,
                     "ack_refers_to_report": s.get("ack_refers_to_report")})

    def stat(key):
        v = [r[key] for r in rows if r[key] is not None]
        if not v:
            return {"n": 0}
        return {"n": len(v), "median_ms": round(statistics.median(v) * 1000, 1),
                "p90_ms": round(pct(v, 90) * 1000, 1), "min_ms": round(min(v) * 1000, 1),
                "max_ms": round(max(v) * 1000, 1)}

    keys = ["submit_to_drained", "idle_to_drained", "submit_to_ack_file", "submit_to_idle",
            "idle_to_recorded", "recorded_to_drained", "smtp_accept"]
    out({"reports": len(subs), "idle_wakes": len(idle), "recorded": len(recorded),
         "drained_lines": len(drained), "stats": {k: stat(k) for k in keys}, "rows": rows,
         "warnings": other_warn[:20], "warning_count": len(other_warn)})


# ---------------------------------------------------------------------------------- config --

def cmd_config(demo, outpath, imap_port, smtp_port, workdir, mode="imap"):
    """The benchmark config: demo.toml's projects with team addresses rewritten to
    <id>-team@example.org (deliverable by the test MTA). Mode "local": the same triage and
    projects, but a Maildir source, file transport and its own database in WORKDIR."""
    import tomllib
    with open(demo, "rb") as f:
        projects = tomllib.load(f).get("project", [])
    q = lambda v: json.dumps(v)  # a JSON string is a valid TOML basic string
    common = [
        "[triage]", 'default_team = ["triage-bench@example.org"]', 'case_prefix = "SEC"',
        'max_message_size = "10MiB"',
        "# The mix repeats senders: the default of 5 would withhold acks and flatter the figures.",
        "auto_replies_per_day = 100000", 'security_model_url = "https://example.org/security/"', "",
    ]
    local = [
        "# Written by scripts/bench-e2e.sh (reference run: no servers).",
        "[mailbox]", 'kind = "maildir"', f"path = {q(os.path.join(workdir, 'Maildir'))}", "",
        "[smtp]", 'kind = "file"', f"dir = {q(os.path.join(workdir, 'outbox'))}",
        'from = "Security Team <sec-bench@example.org>"', "",
        "[database]", f"path = {q(os.path.join(workdir, 'local.db'))}", "",
    ]
    lines = local + common if mode == "local" else [
        "# Written by scripts/bench-e2e.sh.",
        "[mailbox]", 'kind = "imap"', 'host = "127.0.0.1"', f"port = {int(imap_port)}", 'tls = "none"',
        'username = "sec-bench@example.org"', f"password_file = {q(os.path.join(workdir, 'password'))}",
        'folder = "INBOX"', 'after = "seen"', f"batch_size = {int(os.environ.get('BENCH_BATCH', '200'))}", "",
        "[smtp]", 'kind = "smtp"', 'host = "127.0.0.1"', f"port = {int(smtp_port)}", 'tls = "none"',
        'from = "Security Team <sec-bench@example.org>"', "pool_size = 4", "",
        "[database]", f"path = {q(os.path.join(workdir, 'bench.db'))}", "",
    ] + common
    for pr in projects:
        lines.append("[[project]]")
        for k, v in pr.items():
            if k == "team":
                v = [f"{pr['id']}-team@example.org"]
            lines.append(f"{k} = {q(v)}")
        lines.append("")
    with open(os.path.join(workdir, "password"), "w") as f:
        f.write("secret\n")
    with open(outpath, "w") as f:
        f.write("\n".join(lines))
    out({"projects": [p["id"] for p in projects]})


def cmd_latency_check(rdir, reports, exit_status):
    reports = int(reports)
    lat = json.load(open(os.path.join(rdir, "latency.json")))
    imap = json.load(open(os.path.join(rdir, "latency-imap.json")))
    db = json.load(open(os.path.join(rdir, "latency-db.json")))
    failed = []
    if exit_status != "0":
        failed.append(f"daemon exit status after SIGTERM was {exit_status} (expected 0)")
    acked = [r for r in lat["rows"] if r["submit_to_ack_file"] is not None]
    if len(acked) != reports:
        failed.append(f"only {len(acked)}/{reports} acks arrived in the reporter's Maildir within 30 s")
    wrong = [r["i"] for r in acked if r["ack_refers_to_report"] is False]
    if wrong:
        failed.append(f"ack file did not mention the report's Message-ID for reports {wrong}")
    missing = [r["i"] for r in lat["rows"] if r["submit_to_drained"] is None]
    if missing:
        failed.append(f"no 'outbox drained' log line after reports {missing}")
    noidle = [r["i"] for r in lat["rows"] if r["submit_to_drained"] is not None and r["idle_to_drained"] is None]
    if noidle:
        failed.append(f"no IDLE wake-up logged between submit and drain for reports {noidle}")
    if db["messages"] != reports:
        failed.append(f"messages in DB = {db['messages']} (expected {reports}); verdicts {db['verdicts']}")
    if db["outbox_unsent"]:
        failed.append(f"outbox WHERE sent_at IS NULL = {db['outbox_unsent']}: {db['top_errors']}")
    if imap["unseen"]:
        failed.append(f"IMAP SEARCH UNSEEN returned {imap['unseen']}")
    with open(os.path.join(rdir, "latency-checks.json"), "w") as f:
        json.dump(failed, f, indent=1)
    for c in failed:
        print(f"  CHECK FAILED: {c}")


# --------------------------------------------------------------------------------- summary --

def cmd_summary(rdir):
    def load(name):
        p = os.path.join(rdir, name)
        return json.load(open(p)) if os.path.exists(p) else None

    meta = load("meta.json") or {}
    dom = load("domains.json")
    fetch = load("imap-fetch.json")
    runs = []
    for i in range(1, 100):
        r = load(f"run{i}.json")
        if r is None:
            break
        runs.append(r)
    lat = load("latency.json")
    problems = []
    L = []
    p = L.append
    count = meta.get("count")
    p("secintake end-to-end benchmark (private Dovecot + Postfix on loopback)")
    dirty = f" + uncommitted {meta['dirty'].strip()}" if meta.get("dirty", "").strip() else ""
    p(f"  commit {meta.get('commit')}{dirty} (binary {meta.get('binary_sha256')})  |  {meta.get('cpus')} CPUs  |  {count} messages, "
      f"{meta.get('mix_mb')} MB (mix {meta.get('mix_dir')})  |  {len(runs)} runs")
    p("")
    if dom:
        foreign = dom["messages"] - dom["from_deliverable"]
        p(f"Mix sender domains: {dom['from_deliverable']} of {dom['messages']} From: addresses are in "
          f"example.org/.com/.net; {foreign} are not (a reply to one would be refused; see below)")
        top = sorted(dom["from_domains"].items(), key=lambda kv: -kv[1])[:8]
        p("  top From: domains: " + ", ".join(f"{d or '(none)'} {c}" for d, c in top))
    if fetch:
        rate = fetch["messages"] / fetch["fetch_seconds"] if fetch["fetch_seconds"] else 0
        p(f"Bare imaplib fetch (UID FETCH BODY.PEEK[] x {meta.get('chunk')}): {fetch['messages']} msgs, "
          f"{fetch['bytes'] / 1e6:.1f} MB in {fetch['fetch_seconds']:.2f} s ({rate:.0f} msg/s); "
          f"login+select+search+fetch {fetch['total_seconds']:.2f} s")
    loc = load("local-ingest.json")
    if loc:
        rss = None
        try:
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(os.path.join(rdir, "local-timev.txt")).read())
            rss = int(m[1]) / 1024 if m else None
        except OSError:
            pass
        p(f"Reference, no servers: `secintake ingest` of the mix as local .eml files, file transport: "
          f"{loc['seconds']:.2f} s ({count / loc['seconds']:.0f} msg/s end to end), peak RSS "
          f"{rss if rss is None else round(rss, 1)} MiB, exit {loc['exit']}")
        for x in loc["summary"]:
            p(f"    {x}")
    p("")
    if runs:
        p("Full drain: `secintake once` over the whole mailbox")
        p("  run  recorded dup err  fetch_s  ingest/s  sent  def  fail  send_s  mail/s  SMTPconns   wall_s  drain/s  RSS_MiB  cpu%  exit  LMTP_wait_s")
        ing, drn, rss = [], [], []
        for i, r in enumerate(runs, 1):
            o = r["once"]
            ingest = o.get("recorded", 0) / o["fetch_seconds"] if o.get("fetch_seconds") else 0
            drain = count / o["wall_seconds"]
            ing.append(ingest)
            drn.append(drain)
            rss.append((o.get("max_rss_kib") or 0) / 1024)
            p(f"  {i:>3}  {o.get('recorded', '?'):>8} {o.get('duplicates', '?'):>3} {o.get('errors', '?'):>3}  "
              f"{o.get('fetch_seconds', 0):>7.2f}  {ingest:>8.0f}  {o.get('sent', '?'):>4} {o.get('deferred', '?'):>4} "
              f"{o.get('failed', '?'):>5}  {o.get('send_seconds', 0):>6.2f}  "
              f"{(o.get('sent', 0) + o.get('failed', 0) + o.get('deferred', 0)) / o['send_seconds'] if o.get('send_seconds') else 0:>6.0f}  "
              f"{r.get('smtp_connections', '?'):>9}  {o['wall_seconds']:>7.2f}  {drain:>7.0f}  "
              f"{rss[-1]:>7.1f}  {o.get('cpu_percent')!s:>4}  {o.get('exit_status')!s:>4}  {r.get('lmtp_wait_seconds')!s:>6}")
        p(f"  MEDIAN ingest {statistics.median(ing):.0f} msg/s (target >= 5000) | full drain "
          f"{statistics.median(drn):.0f} msg/s (target >= 600) | peak RSS {statistics.median(rss):.1f} MiB "
          f"(max {max(rss):.1f}; target < 64)")
        r0 = runs[-1]
        db = r0["db"]
        p(f"  outbox (last run): {db['outbox_total']} queued, {db['outbox_sent']} sent, {db['outbox_failed']} failed "
          f"for good, {db['outbox_pending']} still pending; verdicts {db['verdicts']}")
        for kind, k in sorted(db["outbox_by_kind"].items()):
            p(f"    {kind:<22} queued {k['queued']:>5}  sent {k['sent']:>5}  failed {k['failed']:>5}  pending {k['pending']:>3}")
        p(f"  recipients by kind/domain: {db['recipients_by_kind_domain']}")
        if db["top_errors"]:
            p("  top delivery errors: " + "; ".join(f"{c} x {e!r}" for e, c in db["top_errors"][:3]))
        o = r0["once"]
        conns = r0.get("smtp_connections")
        if conns and o.get("failed") and conns > o.get("failed", 0) // 2:
            p(f"  note: {conns} SMTP connections for {o.get('sent', 0) + o.get('failed', 0)} deliveries with pool_size 4: "
              f"every refused RCPT (5xx) costs a new connection")
        # A From: outside the test domains matters only if we replied to it (most such mail is
        # automated and gets no reply): count the outbox recipients the test MTA refuses.
        foreign = sum(n for k, n in db["recipients_by_kind_domain"].items() if k.endswith(":foreign"))
        if foreign:
            problems.append(f"MIX: {foreign} outgoing recipients are in domains the test MTA refuses "
                            f"(554 relay denied): those mails cannot be delivered")
            p("  note: replies to the mix's senders are refused at RCPT time by the test MTA, so the send phase "
              "(and the full-drain figure) is not what a relaying production MTA would show")
        p(f"  delivered by Postfix into recipients' Maildirs (last run): {r0['maildir']['files']} files "
          f"(expected {db['recipient_copies_sent']}: one per recipient of each sent row)")
        seen = {}
        for i, r in enumerate(runs, 1):
            for c in r.get("checks_failed", []):
                seen.setdefault(c, []).append(str(i))
        for c, which in seen.items():
            problems.append(f"run {','.join(which)}: {c}")
    p("")
    if lat:
        s = lat["stats"]
        p(f"IDLE latency ({lat['reports']} reports one at a time; {lat['idle_wakes']} IDLE wake-ups logged)")

        def line(label, key, target=""):
            v = s[key]
            if not v.get("n"):
                p(f"  {label:<44} n/a")
            else:
                p(f"  {label:<44} median {v['median_ms']:>7.1f} ms  p90 {v['p90_ms']:>7.1f} ms  "
                  f"(min {v['min_ms']:.1f}, max {v['max_ms']:.1f}, n={v['n']}){target}")
        line("(a) submit -> outbox drained (MTA took ack)", "submit_to_drained", "  target median < 600")
        line("(b) IDLE wake -> outbox drained (ours)", "idle_to_drained", "  target < 100")
        line("(c) submit -> ack file in reporter Maildir", "submit_to_ack_file")
        line("    submit -> IDLE wake (Postfix+LMTP+Dovecot)", "submit_to_idle")
        line("    IDLE wake -> message recorded", "idle_to_recorded")
        line("    message recorded -> outbox drained", "recorded_to_drained")
        line("    SMTP submission (DATA accepted)", "smtp_accept")
        p(f"  daemon exit status after SIGTERM: {meta.get('daemon_exit')}; "
          f"warnings/errors in its log: {lat['warning_count']}")
        for w in lat["warnings"][:5]:
            p(f"    {w}")
        for c in load("latency-checks.json") or []:
            problems.append(f"latency: {c}")
    p("")
    if problems:
        p("CHECKS FAILED / PROBLEMS:")
        for x in problems:
            p(f"  - {x}")
    else:
        p("All correctness checks passed.")
    print("\n".join(L))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"domains": cmd_domains, "load": cmd_load, "imap-exists": cmd_imap_exists,
          "imap-fetch": cmd_imap_fetch, "imap-unseen": cmd_imap_unseen, "db": cmd_db,
          "maildir-count": cmd_maildir_count, "wait-delivered": cmd_wait_delivered,
          "run-assemble": cmd_run_assemble, "config": cmd_config,
          "latency-check": cmd_latency_check, "once-parse": cmd_once_parse,
          "latency": cmd_latency, "latency-parse": cmd_latency_parse,
          "summary": cmd_summary}.get(cmd)
    if fn is None:
        sys.exit(__doc__)
    fn(*args)


if __name__ == "__main__":
    main()
