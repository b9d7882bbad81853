"""``tensorrt_llm.commands``: the console scripts (here ``trtllm-serve`` only)."""
