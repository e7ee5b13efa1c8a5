"""Second opinions on the decision (DESIGN §5), one method per module, each answering
`attribute(model, windows, config, reference=None, device="cpu", progress=None)` with a table in one
long format (`common.COLUMNS`):

- `ig`: integrated gradients on the inputs, the token embeddings and the encoder outputs (captum);
- `attention`: attention attribution after Hao et al. (2021), per layer and pathway;
- `interaction` (`interact`): the modality and pathway games — interaction index, Shapley values;
- `shapley`: exact Shapley values and interaction indices of small games;
- `compare`: the cross-modal share by every method, side by side.

Attribution patching, a first-order estimate of the masking grid, lives with the engine
(`isoprobe.engine.attribution_patching`). Import the modules themselves: captum is heavy to import.
"""
