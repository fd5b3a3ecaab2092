// SPDX-License-Identifier: GPL-2.0
/*
 * kmem_lab: a lab-only module for the kmem-exporter kernel lab (lab/README in docs/lab.md). Never load it on a
 * real host. It does two things user space cannot do honestly:
 *
 *   /sys/kernel/debug/kmem_lab/pin      write "ORDER COUNT": take up to COUNT free blocks of 2^ORDER pages without
 *                                       reclaim or compaction, keep one page of each (unmovable, at a random
 *                                       offset) and give the rest back, so that no block of that order can form
 *                                       there again until the pins go; read: pages pinned so far
 *   /sys/kernel/debug/kmem_lab/probe    write "ORDER": one GFP_KERNEL allocation of 2^ORDER pages, freed at once;
 *                                       without __GFP_NOWARN, so a failure is logged by the kernel itself
 *                                       ("page allocation failure: order:N"); the write fails with ENOMEM then
 *   /sys/kernel/debug/kmem_lab/release  write anything: free every pinned page
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/uaccess.h>

/* The number of orders: MAX_ORDER up to 6.3 (exclusive), MAX_PAGE_ORDER from 6.8 (inclusive). */
#ifdef MAX_PAGE_ORDER
#define LAB_ORDERS (MAX_PAGE_ORDER + 1)
#else
#define LAB_ORDERS MAX_ORDER
#endif

static LIST_HEAD(pinned);
static unsigned long pinned_count;
static DEFINE_MUTEX(lock);
static struct dentry *dir;

static int read_numbers(const char __user *buf, size_t len, unsigned long *a, unsigned long *b)
{
	char text[64];

	if (len == 0 || len >= sizeof(text))
		return -EINVAL;
	if (copy_from_user(text, buf, len))
		return -EFAULT;
	text[len] = '\0';
	return sscanf(text, "%lu %lu", a, b);
}

static unsigned long pin_blocks(unsigned int order, unsigned long count)
{
	/* No reclaim, no compaction, no warning: only blocks that are free now. */
	const gfp_t gfp = (GFP_KERNEL & ~__GFP_RECLAIM) | __GFP_NOWARN;
	unsigned long done = 0;

	while (done < count) {
		struct page *block = alloc_pages(gfp, order);
		unsigned int keep, i;

		if (!block)
			break;
		split_page(block, order);
		keep = get_random_u32() % (1U << order);
		for (i = 0; i < (1U << order); i++) {
			if (i == keep)
				list_add(&block[i].lru, &pinned);
			else
				__free_page(block + i);
		}
		done++;
		cond_resched();
	}
	pinned_count += done;
	return done;
}

static ssize_t pin_write(struct file *file, const char __user *buf, size_t len, loff_t *pos)
{
	unsigned long order, count;

	if (read_numbers(buf, len, &order, &count) != 2 || order == 0 || order >= LAB_ORDERS)
		return -EINVAL;
	mutex_lock(&lock);
	count = pin_blocks(order, count);
	mutex_unlock(&lock);
	pr_info("kmem_lab: pinned %lu order-%lu blocks, %lu pages pinned\n", count, order, pinned_count);
	return len;
}

static ssize_t pin_read(struct file *file, char __user *buf, size_t len, loff_t *pos)
{
	char text[32];
	int n = scnprintf(text, sizeof(text), "%lu\n", pinned_count);

	return simple_read_from_buffer(buf, len, pos, text, n);
}

static ssize_t probe_write(struct file *file, const char __user *buf, size_t len, loff_t *pos)
{
	unsigned long order, unused;
	struct page *page;

	if (read_numbers(buf, len, &order, &unused) < 1 || order >= LAB_ORDERS)
		return -EINVAL;
	page = alloc_pages(GFP_KERNEL, order);
	if (!page)
		return -ENOMEM;
	__free_pages(page, order);
	return len;
}

static void release_all(void)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, &pinned, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
	pinned_count = 0;
}

static ssize_t release_write(struct file *file, const char __user *buf, size_t len, loff_t *pos)
{
	mutex_lock(&lock);
	release_all();
	mutex_unlock(&lock);
	return len;
}

static const struct file_operations pin_fops = { .owner = THIS_MODULE, .write = pin_write, .read = pin_read };
static const struct file_operations probe_fops = { .owner = THIS_MODULE, .write = probe_write };
static const struct file_operations release_fops = { .owner = THIS_MODULE, .write = release_write };

static int __init kmem_lab_init(void)
{
	dir = debugfs_create_dir("kmem_lab", NULL);
	debugfs_create_file("pin", 0600, dir, NULL, &pin_fops);
	debugfs_create_file("probe", 0200, dir, NULL, &probe_fops);
	debugfs_create_file("release", 0200, dir, NULL, &release_fops);
	return 0;
}

static void __exit kmem_lab_exit(void)
{
	debugfs_remove_recursive(dir);
	release_all();
}

module_init(kmem_lab_init);
module_exit(kmem_lab_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmem-exporter lab: unmovable pins that fragment memory, and logged high-order allocations");
