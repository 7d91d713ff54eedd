"""Every 5 s: host busy cores and the top processes by CPU (what ran beside each training case)."""
import json, sys, time
import psutil
out = open(sys.argv[1], "a")
procs = {}
last = psutil.cpu_times()
while True:
    time.sleep(5)
    now = psutil.cpu_times()
    busy = sum(getattr(now, k) - getattr(last, k) for k in ("user", "nice", "system", "irq", "softirq")) / 5
    last = now
    rows = []
    for p in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        try:
            t = p.info["cpu_times"]; c = t.user + t.system
        except Exception:
            continue
        prev = procs.get(p.pid, c); procs[p.pid] = c
        if c - prev > 0.5:
            rows.append((round((c - prev) / 5, 2), p.pid, " ".join(p.info["cmdline"] or [])[-90:]))
    rows.sort(reverse=True)
    out.write(json.dumps({"t": time.time(), "busy_cores": round(busy, 2), "top": rows[:6]}) + "\n"); out.flush()
