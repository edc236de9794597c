# Start-up of the test double: spawn to the ready file with --inspect --port 0, 20 runs.
# Usage: python3 benches/startup.py target/release/poxide
import os, subprocess, sys, time, tempfile, statistics
binary = sys.argv[1]
times = []
for i in range(20):
    d = tempfile.mkdtemp()
    ready = os.path.join(d, "ready.json")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--inspect", "--ready-file", ready], stderr=subprocess.DEVNULL)
    while not os.path.exists(ready):
        time.sleep(0.0002)
    times.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait()
times.sort()
print(f"spawn to ready file (--inspect --port 0), 20 runs: median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms")
