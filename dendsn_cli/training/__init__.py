"""The training task of `dendsn train`: `loop.fit` as named phases (setup, resume, per epoch train,
evaluate, the end-of-epoch callbacks of `callbacks.py`; finish), the parts it builds (`build.py`), the
evaluation (`evaluate.py`), what it watches (`monitor.py`), the TensorBoard figures' registry
(`figures.py`) and logger (`tb.py`)."""
