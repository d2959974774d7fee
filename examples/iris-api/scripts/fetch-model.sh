#!/bin/sh
# Start script: puts the model where app.py expects it (MODEL_PATH, default model/iris.json).
# A real project would download it here, e.g.
#   curl -fsSL "$MODEL_URL" -o "$MODEL_PATH"
# This example writes a small multinomial logistic regression trained on the iris data set.
set -eu
MODEL_PATH="${MODEL_PATH:-model/iris.json}"
mkdir -p "$(dirname "$MODEL_PATH")"
cat > "$MODEL_PATH.tmp" <<'JSON'
{
  "version": "iris-logreg-1",
  "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
  "classes": ["setosa", "versicolor", "virginica"],
  "weights": [
    [-0.4236, 0.9672, -2.5171, -1.0794],
    [0.5345, -0.3216, -0.2064, -0.9443],
    [-0.1109, -0.6456, 2.7235, 2.0237]
  ],
  "intercepts": [9.8497, 2.2374, -12.0871]
}
JSON
mv "$MODEL_PATH.tmp" "$MODEL_PATH"
echo "fetch-model: wrote $MODEL_PATH"
