"""iris-api: a small model API to deploy with deployctl.

A multinomial logistic-regression classifier for iris flowers. The model (weights, classes,
feature names) is read from MODEL_PATH (default model/iris.json), which the start script
scripts/fetch-model.sh puts there before the app starts, standing in for a model download.

    GET  /health   200 "ok" once the model is loaded
    GET  /         what is running: model version, release, commit
    POST /predict  {"instances": [[sepal_length, sepal_width, petal_length, petal_width], ...]}
                   -> {"predictions": [{"class": "setosa", "probabilities": {...}}, ...]}

The request is validated with fastjsonschema (the one extra package, in requirements.txt).
Binds $HOST:$PORT as the deploy agent asks (defaults 127.0.0.1:8000 for a local run).
"""

import json
import math
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastjsonschema

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
MODEL_PATH = os.environ.get("MODEL_PATH", "model/iris.json")
MAX_BODY = 1 << 20

validate_request = fastjsonschema.compile(
    {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {
                    "type": "array",
                    "minItems": 4,
                    "maxItems": 4,
                    "items": {"type": "number"},
                },
            }
        },
        "additionalProperties": False,
    }
)


def load_model(path):
    try:
        with open(path) as f:
            model = json.load(f)
    except FileNotFoundError:
        sys.exit(f"iris-api: model file {path!r} not found; run scripts/fetch-model.sh first")
    for key in ("version", "classes", "features", "weights", "intercepts"):
        if key not in model:
            sys.exit(f"iris-api: model file {path!r} has no {key!r}")
    return model


def softmax(scores):
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def predict(model, row):
    scores = [
        sum(w * x for w, x in zip(weights, row)) + b
        for weights, b in zip(model["weights"], model["intercepts"])
    ]
    probs = softmax(scores)
    best = max(range(len(probs)), key=probs.__getitem__)
    return {
        "class": model["classes"][best],
        "probabilities": {c: round(p, 4) for c, p in zip(model["classes"], probs)},
    }


MODEL = load_model(MODEL_PATH)
INFO = {
    "app": "iris-api",
    "model_version": MODEL["version"],
    "features": MODEL["features"],
    "classes": MODEL["classes"],
    "deployment": os.environ.get("DEPLOYMENT_NAME"),
    "release": os.environ.get("DEPLOYMENT_RELEASE"),
    "commit": os.environ.get("GIT_COMMIT"),
}


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, obj):
        body = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(obj, str) else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, "ok")
        elif self.path == "/":
            self.reply(200, INFO)
        else:
            self.reply(404, {"error": f"no such path {self.path}; try POST /predict"})

    def do_POST(self):
        if self.path != "/predict":
            self.reply(404, {"error": f"no such path {self.path}; try POST /predict"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.reply(413, {"error": f"request body larger than {MAX_BODY} bytes"})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"null")
            validate_request(request)
        except json.JSONDecodeError as e:
            self.reply(400, {"error": f"body is not JSON: {e}"})
            return
        except fastjsonschema.JsonSchemaException as e:
            self.reply(400, {"error": f"bad request: {e.message}", "expected": {"instances": [MODEL["features"]]}})
            return
        predictions = [predict(MODEL, row) for row in request["instances"]]
        self.reply(200, {"predictions": predictions, "model_version": MODEL["version"], "release": INFO["release"]})

    def log_message(self, fmt, *args):
        if self.path != "/health":  # the agent checks health every few seconds
            print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    print(
        f"iris-api: model {MODEL['version']} loaded from {MODEL_PATH}; "
        f"listening on http://{HOST}:{PORT} (release {INFO['release']}, commit {INFO['commit']})",
        flush=True,
    )
    server.serve_forever()
