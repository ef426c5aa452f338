"""The LLM side: the causal-LM adapter, LLM-only methods (IdkPO, RMU, UGradSL), mini-TOFU data and benchmark,
the modality entry, and the training of the shipped tiny LMs."""
