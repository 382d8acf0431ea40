"""An issue's variants: one rendering per choice of sections, made once and kept with the issue.

Every subscriber who chose no sections (most) gets the ``all`` variant; a choice of sections gets
the issue restricted to them, named by their positions in config order (``1,3``). A variant is
rendered and inlined once however many subscribers share it, and stored with the recorded issue
(``record``), so a send, the archive and a later re-send all use the same snapshot. A choice first
met after the issue was recorded is rendered from the issue's stored articles (``Variants``).

This is the one place variants are worked out and rendered; ``weekly`` shows them (``outgoing``)
and the runner sends them.
"""

from __future__ import annotations

from datetime import datetime

from digest.config import Settings
from digest.issue.build import Build
from digest.issue.rank import restrict
from digest.issue.render import Rendered, Renderer
from digest.models import ALL_SECTIONS, Issue, IssueStatus, SectionChoice, issue_of_record, issue_record
from digest.store import Store


def chosen_variants(store: Store, settings: Settings) -> list[str]:
    """The variants besides ``all`` that active subscribers' choices of sections call for, in
    config order of their first section."""
    configured = settings.section_names
    choices = (SectionChoice.of(names, configured) for names in store.subscribers.section_choices())
    places = {choice.variant: choice.positions for choice in choices if not choice.everything}
    return sorted(places, key=places.__getitem__)


def render_variant(settings: Settings, issue: Issue, name: str, renderer: Renderer) -> Rendered | None:
    """The issue as the readers of variant ``name`` get it; None when its sections have no
    article this week (those readers are sent nothing)."""
    part = restrict(issue, SectionChoice.of_variant(name, settings.section_names).sections)
    return None if part is None else renderer.render(part)


def render_chosen(
    store: Store, settings: Settings, issue: Issue, renderer: Renderer | None = None
) -> dict[str, Rendered | None]:
    """Every variant besides ``all`` that subscribers' choices call for, rendered from ``issue``
    (None for one whose sections have no article)."""
    renderer = renderer or Renderer(settings)
    return {name: render_variant(settings, issue, name, renderer) for name in chosen_variants(store, settings)}


def record(
    store: Store,
    settings: Settings,
    result: Build,
    *,
    status: IssueStatus = IssueStatus.SENDING,
    send_at: datetime | None = None,
    renderer: Renderer | None = None,
) -> bool:
    """Store the issue, one rendered variant per choice of sections subscribers have made, and
    its articles; False if it was recorded before (its snapshot is kept).

    ``status`` is "sending" for an issue about to go out, "draft" for one built for review.
    """
    issue = result.issue
    rendered = {ALL_SECTIONS: _parts(result.rendered)}
    for name, part in render_chosen(store, settings, issue, renderer).items():
        if part is not None:
            rendered[name] = _parts(part)
    return store.issues.record(
        issue.key,
        subject=result.rendered.subject,
        window=(issue.window.start, issue.window.end),
        article_count=len(issue.articles),
        summary=issue_record(issue, result.warnings),
        rendered=rendered,
        articles=[a.canonical_url for a in issue.articles],
        status=status,
        send_at=send_at,
    )


def stored_variant(store: Store, key: str, name: str = ALL_SECTIONS) -> Rendered:
    """Variant ``name`` of recorded issue ``key``, as it was stored."""
    subject, html, text = store.issues.variant(key, name)
    return Rendered(subject=subject, html=html, text=text, warnings=())


def _parts(r: Rendered) -> tuple[str, str, str]:
    return r.subject, r.html, r.text


class Variants:
    """The variant each choice of sections gets for one recorded issue, rendered on first need.

    A choice first met after the issue was recorded (a new subscriber, a changed preference) is
    rendered from the issue's stored articles, so it carries the same content as the rest.
    """

    def __init__(self, store: Store, settings: Settings, key: str) -> None:
        self.store, self.settings, self.key = store, settings, key
        self.known = store.issues.variant_names(key)
        self.empty: set[str] = set()
        self._issue: Issue | None = None
        self._renderer: Renderer | None = None

    def __call__(self, choice: tuple[str, ...]) -> str | None:
        """The variant a subscriber with ``choice`` is sent (stored on first need), or None."""
        name = SectionChoice.of(choice, self.settings.section_names).variant
        if name in self.known:
            return name
        if name in self.empty:
            return None
        if self.stored_issue() is None:  # recorded before issues kept their articles: everyone gets it whole
            return ALL_SECTIONS
        rendered = self.render(name)
        if rendered is None:
            self.empty.add(name)
            return None
        self.store.issues.add_variant(self.key, name, _parts(rendered))
        self.known.add(name)
        return name

    def render(self, name: str) -> Rendered | None:
        """Variant ``name`` as it is (or would be) sent, storing nothing: the stored rendering if
        there is one, else one from the issue's stored articles; None if it has no article."""
        if name in self.known:
            return stored_variant(self.store, self.key, name)
        stored = self.stored_issue()
        if stored is None:
            return stored_variant(self.store, self.key, ALL_SECTIONS)
        self._renderer = self._renderer or Renderer(self.settings)
        return render_variant(self.settings, stored, name, self._renderer)

    def render_chosen(self) -> dict[str, Rendered | None]:
        """``render`` of every variant besides ``all`` that subscribers' choices call for."""
        return {name: self.render(name) for name in chosen_variants(self.store, self.settings)}

    def stored_issue(self) -> Issue | None:
        """The recorded issue's sections, articles and lead (None if it was recorded without)."""
        if self._issue is None:
            self._issue = issue_of_record(self.store.issues.summary(self.key))
        return self._issue
