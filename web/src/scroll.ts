// Auto-scroll of the message list. Contract: while the reader is at the bottom (within
// SLACK px) the list follows new text; once the reader scrolls up it stays where they put it,
// however much text arrives; scrolling back to the bottom (or `jump`) follows again. Only the
// reader's scrolling changes that: content growing never does.
const SLACK = 40;

export class Follow {
  private pinned = true;

  constructor(private readonly box: HTMLElement) {
    box.addEventListener("scroll", () => (this.pinned = this.atBottom()), { passive: true });
  }

  private atBottom(): boolean {
    const box = this.box;
    return box.scrollHeight - box.scrollTop - box.clientHeight < SLACK;
  }

  /** Call after the list's content changed: scrolls to the end when following. */
  changed(): void {
    if (this.pinned) this.box.scrollTop = this.box.scrollHeight;
  }

  /** Follows again from the end (a new thread, the reader's own prompt). */
  jump(): void {
    this.pinned = true;
    this.changed();
  }
}
