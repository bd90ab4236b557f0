"""The classifier registry: every `classifier=` option and where its regularisation parameter C sits.

The estimator itself is built from the config group's `estimator` node (a scikit-learn-contract `_target_`,
`src.probe.linear.build_pipeline`); this registry says what the probe needs beyond it. Torch- and sklearn-free,
so the config check can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from src.registry import Registry


@dataclass(frozen=True)
class Classifier:
    name: str
    c_param: str  # C's path inside the estimator (GridSearchCV's parameter name after `clf__`)
    about: str
    # Its scikit-learn estimator's own keyword arguments (`classifier.estimator.<key>`, src.fields) beyond the ones
    # every classifier shares (src.schema): e.g. {"kernel": Choice(("rbf", "poly"), "SVC's kernel")}.
    fields: dict = field(default_factory=dict)


CLASSIFIERS = Registry("classifier", "classifiers")

# What a config's `_target_` (classifier, norm, dimred) may name: scikit-learn, our own estimators, and the modules
# the config's `extensions` lists (a user's own estimator class), as Hydra's execution whitelist patterns.
ALLOWED_TARGETS = ("sklearn.*", "src.probe.*")


def allowed_targets(extensions) -> list[str]:
    from src.registry import extension_modules

    return [*ALLOWED_TARGETS, *(f"{m}.*" for m in extension_modules(extensions))]


def target_allowed(target: str, patterns: list[str]) -> bool:
    """Whether `target` falls under one of `patterns` (`pkg.*`: anything below pkg), as Hydra's whitelist does."""
    return any(target.startswith(p[:-1]) if p.endswith(".*") else target == p for p in patterns)


def register_classifier(name: str, c_param: str = "C", about: str = "", fields: dict | None = None) -> None:
    """Register a classifier; refused when one of its `fields` shares a `classifier.estimator.<key>` name with
    another classifier's of another type (the config check has one declaration per key)."""
    from src.fields import refuse_clash

    refuse_clash("classifier", name, "classifier.estimator", fields or {}, CLASSIFIERS.values())
    CLASSIFIERS.register(name, Classifier(name, c_param, about, dict(fields or {})))


register_classifier("linear_svm", about="one-vs-rest squared hinge (LinearSVC's objective), whole C path in torch")
register_classifier("linear_svm_ovr", about="the same as linear_svm (which is one-vs-rest), by its explicit name")
register_classifier("linear_svm_liblinear", about="scikit-learn's LinearSVC (liblinear): the reference")
register_classifier("linear_svm_ovo", "estimator__C", "one-vs-one LinearSVCs, majority vote")
register_classifier("logistic", about="multinomial logistic regression, whole C path in torch")
register_classifier("logistic_lbfgs", about="scikit-learn's LogisticRegression (lbfgs): the reference")
