"""LLVM code generation for the cpu target: llvmlite IR, O3, object code, cc link."""
