"""Teaching layer: figures, widgets, Grad-CAM, notebook helpers and checks, the reproduction, the course (nbgrader) and the site. Uses every layer below; nothing below imports it."""
