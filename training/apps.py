from __future__ import annotations

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"

    def ready(self) -> None:
        # Reward-model assistance fills labeling's neutral dashboard hooks (labeling never
        # imports training).
        from labeling import hooks
        from training import assistance_views, selectors

        hooks.reference_scores_register(selectors.queue_reference_scores)
        hooks.dashboard_panel_register(assistance_views.queue_assistance_panel)
