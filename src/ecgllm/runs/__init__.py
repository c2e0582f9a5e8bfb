"""Run folders: their layout and loading a trained model from one (layout.py), the main job that fills them
(job.py), the HTML report on one (report.py), and external validation of its model (external.py).

Nothing is imported here, so that loading a model for diagnosis or serving never loads the training code.
"""
