#!/usr/bin/env python3
"""Shop a faculty server's zoo for a task, with nothing but the Python standard library.

Lists the zoo, uploads a dataset, ranks the teachers for it, distills a student from the recommended
one (following the job's server-sent events), downloads the student and checks its sha256.

    python3 examples/shop_zoo.py --server http://127.0.0.1:8080 \
        --dataset zoo/tasks/fashion_clothing_6way.npz --out student.onnx

A refused request prints the server's error and exits with status 1.
"""
import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
import uuid


class Refused(Exception):
    pass


class Faculty:
    def __init__(self, server, token=None):
        self.server = server.rstrip("/")
        self.token = token

    def request(self, method, path, body=None, content_type=None):
        req = urllib.request.Request(self.server + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            return urllib.request.urlopen(req, timeout=600)
        except urllib.error.HTTPError as e:
            try:
                err = json.load(e)
                msg = f"{err.get('kind', 'error')}: {err.get('error')}"
            except ValueError:
                msg = e.reason
            raise Refused(f"{method} {path} was refused ({e.code} {msg})") from None

    def json(self, method, path, payload=None):
        body = None if payload is None else json.dumps(payload).encode()
        with self.request(method, path, body, "application/json" if body else None) as r:
            return json.load(r)

    def upload(self, path, filename, fields=()):
        boundary = uuid.uuid4().hex
        parts = []
        for k, v in fields:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
        with open(filename, "rb") as f:
            data = f.read()
        name = os.path.basename(filename).replace('"', "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        with self.request("POST", path, b"".join(parts), f"multipart/form-data; boundary={boundary}") as r:
            return json.load(r)

    def follow(self, job_id):
        """Yields the job at every change (server-sent events, each with its latest epoch only) until it
        finishes."""
        with self.request("GET", f"/v1/jobs/{job_id}/events?epochs=latest") as r:
            data = []
            for raw in r:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    job = json.loads("\n".join(data))
                    data = []
                    yield job
                    if job["state"] in ("succeeded", "failed", "cancelled"):
                        return

    def download(self, path, out):
        h = hashlib.sha256()
        with self.request("GET", path) as r, open(out, "wb") as f:
            while chunk := r.read(1 << 16):
                h.update(chunk)
                f.write(chunk)
        return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("FACULTY_SERVER", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=os.environ.get("FACULTY_TOKEN"))
    ap.add_argument("--dataset", required=True, help=".npz, .csv or .zip of image folders")
    ap.add_argument("--student", default="mlp:64")
    ap.add_argument("--max-epochs", type=int, default=60)
    ap.add_argument("--out", default="student.onnx")
    a = ap.parse_args()
    fac = Faculty(a.server, a.token)

    zoo = fac.json("GET", "/v1/teachers?page_size=500")
    usable = [t for t in zoo["teachers"] if t["usable"]]
    print(f"zoo: {zoo['total']} teachers, {len(usable)} usable")

    ds = fac.upload("/v1/datasets", a.dataset)
    print(f"dataset {ds['id']}: {ds['rows']} rows, {ds['labeled']} labeled, {len(ds['classes'])} classes")

    ranking = fac.json("POST", "/v1/rankings", {"dataset_id": ds["id"]})
    ranked = sorted((r for r in ranking["results"] if r["rank"]), key=lambda r: r["rank"])
    for r in ranked[:3]:
        print(f"  #{r['rank']} {r['teacher_id']}: {ranking['primary_metric']} {r['score']:.4f}")
    verdict = ranking["verdict"]
    print(f"verdict: {'a teacher helps' if verdict['teacher_helps'] else 'train from scratch'}: {verdict['reason']}")
    top = ranked[0]["teacher_id"]
    label_map = fac.json("GET", f"/v1/rankings/{ranking['id']}/teachers/{top}/label_map")
    print("label map: " + ", ".join(f"{p['teacher_class']} -> {p['task_class']}" for p in label_map["pairs"]))

    method = "faculty" if verdict["teacher_helps"] else "scratch"
    job = fac.json("POST", "/v1/jobs", {
        "dataset_id": ds["id"], "method": method, "teacher": top, "student": a.student,
        "config": {"max_epochs": a.max_epochs},
    })
    print(f"job {job['id']} ({method} from {top})")
    shown = (None, -1.0)
    for job in fac.follow(job["id"]):
        # a line per phase, and per 10% of progress
        if job["phase"] == shown[0] and job["progress"] < shown[1] + 0.1 and job["state"] == "running":
            continue
        shown = (job["phase"], job["progress"])
        last = job["epochs"][-1] if job["epochs"] else None
        acc = f", validation accuracy {last['val_accuracy']:.3f}" if last and last.get("val_accuracy") is not None else ""
        print(f"  {job['state']}: {job['phase']} {100 * job['progress']:.0f}%{acc}", flush=True)
    if job["state"] != "succeeded":
        raise Refused(f"job {job['id']} {job['state']}: {job.get('error')}")

    card = fac.json("GET", f"/v1/students/{job['student_id']}")
    sha = fac.download(f"/v1/students/{card['id']}/model.onnx", a.out)
    if sha != card["sha256"]:
        raise Refused(f"the download's sha256 {sha} is not the card's {card['sha256']}")
    acc = card["test"]["student"]["accuracy"] if card.get("test") else card["accuracy"]["student"]
    print(f"student {card['id']} -> {a.out}: {card['parameters']} parameters, accuracy {acc:.3f}, sha256 {sha} verified")


if __name__ == "__main__":
    try:
        main()
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except (urllib.error.URLError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
