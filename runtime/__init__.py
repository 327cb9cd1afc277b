"""Kiln's minimal runtime: numpy + the standard library. Loads artifacts and runs them."""

from runtime.artifact_reader import ArtifactError
from runtime.model import CompiledModel, load
from runtime.requests import AsyncInferQueue, InferRequest
from runtime.signature import InputError, TensorInfo

__all__ = ["ArtifactError", "AsyncInferQueue", "CompiledModel", "InferRequest", "InputError", "TensorInfo", "load"]
