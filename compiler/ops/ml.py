"""Classical ML ops of the ai.onnx.ml domain (tree ensembles, linear models, encoders, scalers).

Left out: DictVectorizer, CastMap and ZipMap (they take or make map values, which the IR
does not hold) and CategoryMapper (no reference semantics in onnx).
"""

from compiler.ops.onnx_semantics import onnx_ops

onnx_ops("ml", ["ArrayFeatureExtractor", "Binarizer", "FeatureVectorizer", "Imputer", "LabelEncoder",
                "LinearClassifier", "LinearRegressor", "Normalizer", "OneHotEncoder", "SVMClassifier",
                "SVMRegressor", "Scaler", "TreeEnsemble", "TreeEnsembleClassifier", "TreeEnsembleRegressor"],
         domain="ai.onnx.ml")
