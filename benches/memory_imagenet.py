"""Peak memory and time of a cold ranking when teachers take 224x224 colour inputs: a zoo of the bundled
MNIST CNN and three ImageNet models from the onnx package's test data (SqueezeNet, ResNet-50, ShuffleNet;
weights seeded, full-size activations), MNIST rows resized for them. Each run starts a fresh release
server (so every model is measured anew), uploads the task, ranks it once and reads the process's peak
from GET /healthz. Stops by itself.

Usage: PYTHONPATH=.ort/py python3 benches/memory_imagenet.py [RUNS] [TASK.npz] [serve flags...]
  e.g. ... 2 zoo/tasks/mnist_10way_5shot.npz --memory-budget-mb 640
The binary is $CARGO_TARGET_DIR/release/faculty (build it first: cargo build --release).
"""
import json, os, shutil, subprocess, sys, tempfile, time, urllib.request

root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
task = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "zoo/ground_truth/mnist_10way.npz")
flags = sys.argv[3:]
binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/faculty/target")),
                      "release/faculty")
light = os.path.join(root, ".ort/py/onnx/backend/test/data/light")
env = dict(os.environ, ORT_DYLIB_PATH=os.path.join(root, ".ort/onnxruntime/capi/libonnxruntime.so.1.31.1"))


def call(url, data=None):
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    return json.load(urllib.request.urlopen(req, timeout=1200))


print(f"{os.path.basename(task)}, serve flags: {' '.join(flags) or 'defaults'}")
print("| run | idle RSS | peak RSS | cold ranking | teachers ranked |")
print("|---:|---:|---:|---:|---:|")
for r in range(runs):
    work = tempfile.mkdtemp()
    try:
        zoo = os.path.join(work, "zoo")
        os.makedirs(zoo)
        shutil.copytree(os.path.join(root, "zoo/teachers/mnist_cnn"), os.path.join(zoo, "mnist_cnn"))
        for m in ["squeezenet", "resnet50", "shufflenet"]:
            shutil.copy(os.path.join(light, f"light_{m}.onnx"), zoo)
        port = 18500 + r
        base = f"http://127.0.0.1:{port}"
        with open(os.path.join(work, "log"), "w") as log:
            p = subprocess.Popen([binary, "serve", "--zoo", zoo, "--data-dir", os.path.join(work, "state"),
                                  "--addr", f"127.0.0.1:{port}", *flags], env=env, stdout=log, stderr=log)
        try:
            for _ in range(600):
                try:
                    health = call(base + "/healthz")
                    break
                except OSError:
                    time.sleep(0.3)
            up = subprocess.run(["curl", "-sf", "-F", f"file=@{task}", "-F", "name=task", base + "/v1/datasets"],
                                capture_output=True, text=True, check=True).stdout
            began = time.time()
            ranking = call(base + "/v1/rankings", json.dumps({"dataset_id": json.loads(up)["id"]}).encode())
            took = time.time() - began
            peak = call(base + "/healthz")["peak_resident_mb"]
            ranked = sum(1 for t in ranking["results"] if t["compatible"])
            print(f"| {r} | {health['resident_mb']} MB | {peak} MB | {took:.1f} s | {ranked} |", flush=True)
        finally:
            p.terminate()
            p.wait()
    finally:
        shutil.rmtree(work)
