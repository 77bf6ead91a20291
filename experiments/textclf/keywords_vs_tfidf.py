"""Keywords of a trained attention classifier (received attention, gradient × input) against TF-IDF top-k.

For every test abstract of the run's split: the top-k words by each method, and their overlap with the top-k words by
TF-IDF weight (the vectorizer of the baseline, fitted on the training abstracts), beside the overlap expected of k
words drawn at random from the abstract. A few abstracts are printed in full for RESULTS.md.

Usage, from the repository root:
  .venv/bin/python experiments/textclf/keywords_vs_tfidf.py --workdir runs/textclf/transformer_s0 [--k 8] [--show 3]
"""

from __future__ import annotations

import argparse
import re

import jax
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from medjax.data.vocab import pad_batch, tokenize
from medjax.explain import keywords as kw
from medjax.tasks import textclf

# scikit-learn's default token pattern: the words TF-IDF can rank (2+ word characters, lower-cased).
_TFIDF_WORD = re.compile(r"(?u)\b\w\w+\b")


def comparable(ranking: list[tuple[str, float]], k: int) -> list[str]:
    """The top-k of a model ranking among words TF-IDF could also pick (lower-cased, 2+ characters)."""
    words = []
    for word, _ in ranking:
        word = word.lower()
        if _TFIDF_WORD.fullmatch(word) and word not in words:
            words.append(word)
        if len(words) == k:
            break
    return words


def tfidf_top(vectorizer: TfidfVectorizer, text: str, k: int) -> list[str]:
    row = vectorizer.transform([text]).tocoo()
    names = vectorizer.get_feature_names_out()
    order = np.argsort(-row.data, kind="stable")[:k]
    return [names[row.col[i]] for i in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a textclf run of a transformer or attention model")
    parser.add_argument("--k", type=int, default=8, help="keywords per abstract")
    parser.add_argument("--show", type=int, default=3, help="abstracts printed in full (one per class, from test)")
    parser.add_argument("--batch", type=int, default=32, help="abstracts scored per jitted call")
    parser.add_argument("--methods", nargs="+", default=list(kw.SCORERS), choices=list(kw.SCORERS),
                        help="rankings to compare (an LSTM run has no attention: pass --methods gradient)")
    args = parser.parse_args()

    run = kw.restore_classifier(args.workdir)
    data = textclf.load_corpus(run.config)
    texts, labels = data.texts("test"), data.labels("test")
    vectorizer = TfidfVectorizer(min_df=2, sublinear_tf=True).fit(data.texts("train"))
    # One padded shape for every batch: each (jitted) scorer compiles once.
    predict = jax.jit(lambda v, i, k: run.classifier.apply(v, i, k).argmax(-1))

    rng = np.random.default_rng(0)
    methods = {m: kw.SCORERS[m] for m in args.methods}
    overlaps = {m: [] for m in (*methods, "random")}
    shown = set()
    # One padded shape for every batch: each scorer compiles once.
    longest = max(len(tokenize(t)[: run.config.max_length or None]) for t in texts)
    for start in range(0, len(texts), args.batch):
        chunk = texts[start : start + args.batch]
        tokens = [tokenize(t)[: run.config.max_length or None] for t in chunk]
        ids, mask = pad_batch([run.vocab.encode(t) for t in tokens], bucket=longest, max_length=longest)
        scores = {m: np.asarray(f(run.classifier, run.variables, ids, mask)) for m, f in methods.items()}
        predicted = np.asarray(predict(run.variables, ids, mask))
        for j, text in enumerate(chunk):
            reference = set(tfidf_top(vectorizer, text, args.k))
            words = {m: comparable(kw.rank_tokens(tokens[j], s[j, : len(tokens[j])], run.vocab), args.k)
                     for m, s in scores.items()}
            pool = sorted({w.lower() for w in tokens[j] if _TFIDF_WORD.fullmatch(w.lower())})
            words["random"] = list(rng.choice(pool, size=min(args.k, len(pool)), replace=False))
            for m, chosen in words.items():
                overlaps[m].append(len(reference & set(chosen)) / args.k)
            label = int(labels[start + j])
            if len(shown) < args.show and label not in shown:
                shown.add(label)
                print(f"### test abstract {start + j}: {run.class_names[label]} "
                      f"(predicted: {run.class_names[int(predicted[j])]})\n> {text[:300]}...\n")
                print(f"- TF-IDF: {', '.join(tfidf_top(vectorizer, text, args.k))}")
                for m in methods:
                    print(f"- {m}: {', '.join(words[m])}")
                print()
    print(f"overlap with TF-IDF top-{args.k}, mean over {len(texts)} test abstracts:")
    for m, values in overlaps.items():
        print(f"- {m}: {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
