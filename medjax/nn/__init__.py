"""The tutorial's maths as pure `jnp` functions, with thin Flax Linen wrappers.

    >>> from medjax.nn import scaled_dot_product_attention, lstm_cell, TutorialCNN

Pure functions: `conv2d`, `max_pool_2x2`, `lstm_cell`, `rnn_cell`, `lstm_layer`, `last_valid`,
`scaled_dot_product_attention`, `attention_weights`, `sinusoidal_positions`, `crf_log_likelihood`, `viterbi_decode`;
`dot_product_attention` checks its inputs and picks the attention kernel (`medjax.nn.attention_kernels`).
Modules: the tutorial's three models (`TutorialCNN`, `TutorialLSTMClassifier`, `TutorialAttentionClassifier`), `LSTM`,
`MultiHeadAttention`, `EncoderBlock`, `TransformerEncoder`, `ResNet18`, `ResNet50`, `CRF`, the NER taggers and the text
classifiers.
"""

from medjax.nn.attention import attention_weights, scaled_dot_product_attention
from medjax.nn.attention_kernels import dot_product_attention
from medjax.nn.conv import Conv2D, TutorialCNN, conv2d, max_pool_2x2
from medjax.nn.crf import CRF, crf_log_likelihood, viterbi_decode
from medjax.nn.encoder import EncoderBlock, TransformerEncoder, TutorialAttentionClassifier, masked_mean
from medjax.nn.multihead import MultiHeadAttention
from medjax.nn.positions import LearnedPositions, sinusoidal_positions
from medjax.nn.recurrent import LSTM, TutorialLSTMClassifier, last_valid, lstm_cell, lstm_layer, rnn_cell
from medjax.nn.resnet import ResNet, ResNet18, ResNet50

__all__ = [
    "CRF", "LSTM", "Conv2D", "EncoderBlock", "LearnedPositions", "MultiHeadAttention", "ResNet", "ResNet18", "ResNet50",
    "TransformerEncoder", "TutorialAttentionClassifier", "TutorialCNN", "TutorialLSTMClassifier", "attention_weights",
    "conv2d", "crf_log_likelihood", "dot_product_attention", "last_valid", "lstm_cell", "lstm_layer", "masked_mean",
    "max_pool_2x2", "rnn_cell", "scaled_dot_product_attention", "sinusoidal_positions", "viterbi_decode",
]
